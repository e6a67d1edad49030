//! Computing the status report from the 5-minute status buckets.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::status::{
    bucket_floor, Incident, StatusTotals, BUCKET_MS, HISTOGRAM_LEN, LATENCY_BOUNDS_MS,
};
use crate::store::{Store, StoreResult};

/// Buckets in the "hour" window: the current one and the 11 before it.
pub const HOUR_BUCKETS: i64 = 12;
/// Buckets in the "day" window.
pub const DAY_BUCKETS: i64 = 288;
/// Resolved incidents stay on the page this long.
pub const RESOLVED_SHOWN_MS: i64 = 7 * 24 * 3_600_000;

/// Below this availability over the last hour a component is `degraded`,
/// below [`OUTAGE_BELOW`] it is `outage`.
pub const DEGRADED_BELOW: f64 = 0.99;
pub const OUTAGE_BELOW: f64 = 0.90;

/// The figures of one component over one window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowStats {
    pub attempts: i64,
    pub failures: i64,
    pub errors: i64,
    /// Share of attempts the provider did not fail (no answer, 5xx, 429);
    /// `null` without attempts.
    pub availability: Option<f64>,
    /// Share of attempts that did not succeed for any reason.
    pub error_rate: Option<f64>,
    /// Percentiles of successful attempts' latency, as the upper bound of
    /// their histogram bucket (ms); `null` without successes.
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
    /// Streamed calls served: time to the first token.
    pub ttft_count: i64,
    pub ttft_p50_ms: Option<i64>,
    pub ttft_p95_ms: Option<i64>,
}

/// The upper bound of the bucket holding the `q` quantile (nearest rank).
/// The slowest bucket has no bound: reported as its lower bound.
pub fn percentile(hist: &[i64; HISTOGRAM_LEN], q: f64) -> Option<i64> {
    let n: i64 = hist.iter().sum();
    if n <= 0 {
        return None;
    }
    // Nearest rank, in integers: ceil(q * n) with q in hundredths.
    let q100 = (q * 100.0).round() as i64;
    let rank = ((q100 * n + 99) / 100).max(1);
    let mut seen = 0;
    for (i, c) in hist.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(
                LATENCY_BOUNDS_MS
                    .get(i)
                    .copied()
                    .unwrap_or(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1]),
            );
        }
    }
    None
}

impl WindowStats {
    pub fn of(t: &StatusTotals) -> WindowStats {
        let ratio = |n: i64| (t.attempts > 0).then(|| n as f64 / t.attempts as f64);
        WindowStats {
            attempts: t.attempts,
            failures: t.failures,
            errors: t.errors,
            availability: ratio(t.attempts - t.failures),
            error_rate: ratio(t.errors),
            latency_p50_ms: percentile(&t.latency, 0.5),
            latency_p95_ms: percentile(&t.latency, 0.95),
            ttft_count: t.ttft.iter().sum(),
            ttft_p50_ms: percentile(&t.ttft, 0.5),
            ttft_p95_ms: percentile(&t.ttft, 0.95),
        }
    }

    /// `operational`, `degraded` or `outage` from the availability; no
    /// traffic is `operational` (nothing says otherwise).
    pub fn state(&self) -> &'static str {
        match self.availability {
            Some(a) if a < OUTAGE_BELOW => "outage",
            Some(a) if a < DEGRADED_BELOW => "degraded",
            _ => "operational",
        }
    }
}

/// One provider kind, or one model of a provider kind.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Component {
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// From the last hour's availability.
    pub state: &'static str,
    pub hour: WindowStats,
    pub day: WindowStats,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PublicIncident {
    pub id: String,
    pub title: String,
    pub message: String,
    pub impact: String,
    pub state: String,
    pub components: Vec<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
}

impl From<Incident> for PublicIncident {
    fn from(i: Incident) -> Self {
        PublicIncident {
            id: i.id,
            title: i.title,
            message: i.message,
            impact: i.impact,
            state: i.state,
            components: i
                .components
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect(),
            created_at_ms: i.created_at_ms,
            updated_at_ms: i.updated_at_ms,
            resolved_at_ms: (i.resolved_at_ms > 0).then_some(i.resolved_at_ms),
        }
    }
}

/// The whole page.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusReport {
    pub generated_at_ms: i64,
    /// Start of the windows (epoch ms): whole 5-minute buckets up to now.
    pub hour_since_ms: i64,
    pub day_since_ms: i64,
    /// `operational`, `degraded`, `outage`: the worst provider state, or
    /// the impact of an open major/critical incident.
    pub overall: &'static str,
    pub providers: Vec<Component>,
    pub models: Vec<Component>,
    /// Open incidents and those resolved in the last 7 days, newest first.
    pub incidents: Vec<PublicIncident>,
}

fn rank(state: &str) -> u8 {
    match state {
        "outage" => 2,
        "degraded" => 1,
        _ => 0,
    }
}

fn components(
    totals: BTreeMap<(String, Option<String>), (StatusTotals, StatusTotals)>,
) -> Vec<Component> {
    totals
        .into_iter()
        .map(|((provider, model), (hour, day))| {
            let hour = WindowStats::of(&hour);
            Component {
                provider,
                model,
                state: hour.state(),
                hour,
                day: WindowStats::of(&day),
            }
        })
        .collect()
}

/// Computes the report at `now_ms`.
pub async fn compute(store: &Store, now_ms: i64) -> StoreResult<StatusReport> {
    let current = bucket_floor(now_ms);
    let hour_since = current - (HOUR_BUCKETS - 1) * BUCKET_MS;
    let day_since = current - (DAY_BUCKETS - 1) * BUCKET_MS;
    let rows = store.status_rows(day_since).await?;
    type Acc = BTreeMap<(String, Option<String>), (StatusTotals, StatusTotals)>;
    let (mut providers, mut models): (Acc, Acc) = (BTreeMap::new(), BTreeMap::new());
    for r in rows {
        for (acc, key) in [
            (&mut providers, (r.provider_kind.clone(), None)),
            (
                &mut models,
                (r.provider_kind.clone(), Some(r.upstream_model.clone())),
            ),
        ] {
            let (hour, day) = acc.entry(key).or_default();
            day.add(&r.totals);
            if r.bucket_ms >= hour_since {
                hour.add(&r.totals);
            }
        }
    }
    let providers = components(providers);
    let models = components(models);
    let incidents: Vec<PublicIncident> = store
        .list_incidents(now_ms - RESOLVED_SHOWN_MS)
        .await?
        .into_iter()
        .map(PublicIncident::from)
        .collect();
    let mut overall = providers
        .iter()
        .map(|c| c.state)
        .max_by_key(|s| rank(s))
        .unwrap_or("operational");
    for i in incidents.iter().filter(|i| i.resolved_at_ms.is_none()) {
        let s = match i.impact.as_str() {
            "critical" => "outage",
            "major" | "minor" => "degraded",
            _ => "operational",
        };
        if rank(s) > rank(overall) {
            overall = s;
        }
    }
    Ok(StatusReport {
        generated_at_ms: now_ms,
        hour_since_ms: hour_since,
        day_since_ms: day_since,
        overall,
        providers,
        models,
        incidents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_buckets() {
        let mut h = [0i64; HISTOGRAM_LEN];
        assert_eq!(percentile(&h, 0.5), None);
        // 10 samples: 6 ≤ 25 ms, 3 ≤ 250 ms, 1 slower than a minute.
        h[0] = 6;
        h[3] = 3;
        h[11] = 1;
        assert_eq!(percentile(&h, 0.5), Some(25));
        assert_eq!(percentile(&h, 0.9), Some(250));
        assert_eq!(percentile(&h, 0.95), Some(60000));
    }

    #[test]
    fn states_from_availability() {
        let mut t = StatusTotals {
            attempts: 100,
            ..Default::default()
        };
        assert_eq!(WindowStats::of(&t).state(), "operational");
        t.failures = 2;
        assert_eq!(WindowStats::of(&t).state(), "degraded");
        t.failures = 11;
        assert_eq!(WindowStats::of(&t).state(), "outage");
        assert_eq!(WindowStats::of(&StatusTotals::default()).availability, None);
    }
}
