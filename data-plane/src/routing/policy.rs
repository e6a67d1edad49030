//! A route's policy: strategy, retry budget, timeouts and breaker settings,
//! with the data plane's defaults for everything left unset.

use std::time::Duration;

use tollgate_proto::sync::v1 as pb;

use super::breaker::BreakerConfig;

/// How the targets of one priority group are ordered for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Random, proportional to the targets' weights.
    Weighted,
    /// Fewest calls in flight first (ties broken at random).
    LeastInFlight,
    /// Lowest observed latency (EWMA) first; unmeasured targets first.
    Latency,
    /// The configured order: a plain fallback chain.
    Ordered,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "" | "weighted" | "weighted_random" => Some(Strategy::Weighted),
            "least_in_flight" | "least-in-flight" => Some(Strategy::LeastInFlight),
            "latency" | "ewma" | "lowest_latency" => Some(Strategy::Latency),
            "ordered" | "fallback" => Some(Strategy::Ordered),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Strategy::Weighted => "weighted",
            Strategy::LeastInFlight => "least_in_flight",
            Strategy::Latency => "latency",
            Strategy::Ordered => "ordered",
        }
    }
}

pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
pub const DEFAULT_RETRIES_PER_TARGET: u32 = 1;
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(100);
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(2);

/// Compiled policy of one route.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutePolicy {
    pub strategy: Strategy,
    /// Upstream attempts per call, across all targets (≥ 1).
    pub max_attempts: u32,
    /// Retries on the same target before moving on.
    pub retries_per_target: u32,
    /// Whole exchange of a non-streamed call; `None`: the data plane's.
    pub total_timeout: Option<Duration>,
    /// Stream: until the first chunk; `None`: the data plane's.
    pub ttft_timeout: Option<Duration>,
    /// Stream: longest gap between chunks; `None`: the data plane's.
    pub idle_timeout: Option<Duration>,
    /// Per-route connect timeout (recorded; the shared client's applies).
    pub connect_timeout: Option<Duration>,
    pub retry_base: Duration,
    /// Cap of a backoff delay and of an upstream `Retry-After`.
    pub retry_max: Duration,
    pub breaker: BreakerConfig,
    /// Public model retried once when the provider refuses the request for
    /// its context length or content policy.
    pub fallback_model: Option<String>,
}

impl Default for RoutePolicy {
    fn default() -> Self {
        RoutePolicy {
            strategy: Strategy::Weighted,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retries_per_target: DEFAULT_RETRIES_PER_TARGET,
            total_timeout: None,
            ttft_timeout: None,
            idle_timeout: None,
            connect_timeout: None,
            retry_base: DEFAULT_RETRY_BASE,
            retry_max: DEFAULT_RETRY_MAX,
            breaker: BreakerConfig::default(),
            fallback_model: None,
        }
    }
}

fn ms(v: u64) -> Option<Duration> {
    (v > 0).then(|| Duration::from_millis(v))
}

impl RoutePolicy {
    /// The policy of a snapshot route; `Err` names an unknown strategy.
    pub fn from_proto(p: Option<&pb::RoutePolicy>) -> Result<RoutePolicy, String> {
        let mut policy = RoutePolicy::default();
        let Some(p) = p else {
            return Ok(policy);
        };
        policy.strategy = Strategy::parse(&p.strategy).ok_or_else(|| {
            format!(
                "unknown strategy {:?} (expected weighted, least_in_flight, latency or ordered)",
                p.strategy
            )
        })?;
        if p.max_attempts > 0 {
            policy.max_attempts = p.max_attempts;
        }
        if p.no_same_target_retry {
            policy.retries_per_target = 0;
        } else if p.retries_per_target > 0 {
            policy.retries_per_target = p.retries_per_target;
        }
        policy.connect_timeout = ms(p.connect_timeout_ms);
        policy.total_timeout = ms(p.total_timeout_ms);
        policy.ttft_timeout = ms(p.ttft_timeout_ms);
        policy.idle_timeout = ms(p.idle_timeout_ms);
        if let Some(d) = ms(p.retry_base_ms) {
            policy.retry_base = d;
        }
        if let Some(d) = ms(p.retry_max_ms) {
            policy.retry_max = d;
        }
        if p.breaker_failures > 0 {
            policy.breaker.failure_threshold = p.breaker_failures;
        }
        if let Some(d) = ms(p.breaker_cooldown_ms) {
            policy.breaker.cooldown_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        }
        let fallback = p.fallback_model.trim();
        policy.fallback_model = (!fallback.is_empty()).then(|| fallback.to_string());
        Ok(policy)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unset_fields_take_defaults() {
        assert_eq!(
            RoutePolicy::from_proto(None).unwrap(),
            RoutePolicy::default()
        );
        let p = RoutePolicy::from_proto(Some(&pb::RoutePolicy {
            strategy: "ordered".into(),
            max_attempts: 5,
            no_same_target_retry: true,
            ttft_timeout_ms: 250,
            breaker_failures: 2,
            breaker_cooldown_ms: 1000,
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(p.strategy, Strategy::Ordered);
        assert_eq!((p.max_attempts, p.retries_per_target), (5, 0));
        assert_eq!(p.ttft_timeout, Some(Duration::from_millis(250)));
        assert_eq!(p.total_timeout, None);
        assert_eq!(p.breaker.failure_threshold, 2);
        assert_eq!(p.breaker.cooldown_ms, 1000);
        let e = RoutePolicy::from_proto(Some(&pb::RoutePolicy {
            strategy: "roundrobin".into(),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(e.contains("roundrobin"), "{e}");
    }
}
