//! Admitting one call against every limit that applies to it: an in-flight
//! slot per concurrency limit, then one request (and the token estimate)
//! from each window. A refusal gives back everything taken so far. The
//! admission is held by the call; dropping it frees the in-flight slots on
//! every exit path (errors and disconnects included), and
//! [`Admission::settle`] corrects the token estimate with the real usage.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use smallvec::SmallVec;
use tollgate_core::time::now_ms;

use super::headers::RateHeaders;
use super::queue;
use super::quota::local_share;
use super::{Dim, KeyLimits, Limiter, LimiterState, Scope, WINDOWED};

/// What one call took from one window counter.
#[derive(Debug)]
struct Take {
    state: Arc<LimiterState>,
    index: usize,
    window: i64,
    amount: i64,
}

/// A call let through; hold it until the call ends. Inline room for the
/// usual case (one limiter with a request and a token window and a
/// concurrency limit), so admitting a call allocates nothing.
#[derive(Debug, Default)]
pub struct Admission {
    /// Token estimates taken (corrected by `settle`).
    tokens: SmallVec<[Take; 2]>,
    /// Requests taken (only given back if a later limit refuses).
    requests: SmallVec<[Take; 2]>,
    in_flight: SmallVec<[Arc<LimiterState>; 2]>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        for s in &self.in_flight {
            queue::release(s);
        }
    }
}

impl Admission {
    fn undo(mut self) {
        for t in self.tokens.drain(..).chain(self.requests.drain(..)) {
            t.state.windows[t.index].give_back(t.window, t.amount);
        }
    }

    /// Corrects the token estimate with the tokens the call really used
    /// (`None`: unknown, the estimate stands). Fewer go back to the window
    /// they came from; more are charged to the current window.
    pub fn settle(mut self, actual_tokens: Option<i64>) {
        let Some(actual) = actual_tokens else {
            return;
        };
        let now = now_ms();
        for t in self.tokens.drain(..) {
            let c = &t.state.windows[t.index];
            let diff = t.amount - actual.max(0);
            if diff > 0 {
                c.give_back(t.window, diff);
            } else {
                c.charge(now, -diff);
            }
        }
    }
}

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub scope: Scope,
    pub dim: Dim,
    pub limit: i64,
    /// Until the window of the limit ends (1 s for concurrency).
    pub retry_after_ms: i64,
}

/// The rate-limit state of one call (in its `CallContext`).
#[derive(Debug, Default)]
pub struct CallLimits {
    /// `x-ratelimit-*` headers of the response; `None`: the key is not
    /// limited.
    pub headers: Option<RateHeaders>,
    pub admission: Option<Admission>,
}

fn reject(
    adm: Admission,
    l: &Limiter,
    dim: Dim,
    limit: i64,
    retry_after_ms: i64,
) -> Result<Admission, Rejected> {
    adm.undo();
    let hub = &l.state.hub;
    let i = dim.index().unwrap_or(5);
    hub.rejections[i].fetch_add(1, Ordering::Relaxed);
    crate::telemetry::limit_rejected(l.scope.as_str(), dim.as_str());
    Err(Rejected {
        scope: l.scope,
        dim,
        limit,
        retry_after_ms,
    })
}

/// Admits a call of a key with `limits` to `model_id` whose input and
/// output are estimated at `estimate_tokens`.
pub async fn admit(
    limits: &KeyLimits,
    model_id: &str,
    estimate_tokens: i64,
) -> (Result<Admission, Rejected>, RateHeaders) {
    let limiters = limits.for_model(model_id);
    let result = admit_all(&limiters, estimate_tokens).await;
    let headers = RateHeaders::of(limiters.iter().flatten().map(|l| l.as_ref()), now_ms());
    (result, headers)
}

async fn admit_all(
    limiters: &[Option<&Arc<Limiter>>; 3],
    estimate: i64,
) -> Result<Admission, Rejected> {
    let mut adm = Admission::default();
    for l in limiters.iter().flatten() {
        if l.max_concurrent > 0 {
            let cap = local_share(
                l.max_concurrent,
                l.state.hub.settings().expected_data_planes,
            );
            if !queue::try_slot(&l.state, cap)
                && !queue::wait_for_slot(&l.state, cap, l.queue).await
            {
                return reject(adm, l, Dim::Concurrency, l.max_concurrent, 1_000);
            }
            adm.in_flight.push(l.state.clone());
        }
    }
    for l in limiters.iter().flatten() {
        for (index, dim) in WINDOWED.iter().enumerate() {
            let limit = l.limits[index];
            if limit <= 0 {
                continue;
            }
            let amount = if dim.is_tokens() { estimate.max(0) } else { 1 };
            let c = &l.state.windows[index];
            let hub = &l.state.hub;
            if amount > limit {
                // Never fits in a window of this limit.
                let reset = c.reset_ms(now_ms());
                return reject(adm, l, *dim, limit, reset);
            }
            let mut w = c.roll(now_ms());
            if !c.try_take(amount) {
                // Twice: a refill already in flight when this call started
                // waiting may have been sized before its need was known.
                let mut taken = false;
                for _ in 0..2 {
                    if c.is_exhausted() {
                        break;
                    }
                    hub.obtain(&l.state, index, limit, amount).await;
                    w = c.roll(now_ms());
                    if c.try_take(amount) {
                        taken = true;
                        break;
                    }
                }
                if !taken {
                    let reset = c.reset_ms(now_ms());
                    return reject(adm, l, *dim, limit, reset);
                }
            }
            hub.top_up(&l.state, index, limit);
            let take = Take {
                state: l.state.clone(),
                index,
                window: w,
                amount,
            };
            if dim.is_tokens() {
                adm.tokens.push(take);
            } else {
                adm.requests.push(take);
            }
        }
    }
    Ok(adm)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ratelimit::{LimiterRegistry, RateLimitTable};
    use tollgate_proto::sync::v1 as pb;

    fn table(registry: &LimiterRegistry, rules: Vec<pb::RateLimitRule>) -> RateLimitTable {
        let snap = pb::Snapshot {
            tenants: vec![pb::TenantConfig {
                id: "tn".into(),
                keys: vec![pb::CallerKeyConfig {
                    id: "ck".into(),
                    ..Default::default()
                }],
                rate_limits: rules,
                ..Default::default()
            }],
            ..Default::default()
        };
        RateLimitTable::compile(&snap, registry)
    }

    fn rule(scope: &str, target: &str) -> pb::RateLimitRule {
        pb::RateLimitRule {
            scope: scope.into(),
            target_id: target.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn requests_per_minute_admit_exactly_the_limit() {
        let registry = LimiterRegistry::default();
        let t = table(
            &registry,
            vec![pb::RateLimitRule {
                requests_per_minute: 7,
                ..rule("key", "ck")
            }],
        );
        let limits = t.for_key("ck").unwrap();
        let mut ok = 0;
        let mut refused = None;
        for _ in 0..10 {
            match admit(limits, "md", 0).await.0 {
                Ok(a) => {
                    ok += 1;
                    a.settle(Some(0));
                }
                Err(r) => refused = Some(r),
            }
        }
        // Unless the test straddled a minute boundary.
        assert!(ok == 7 || ok >= 8, "{ok}");
        let r = refused.unwrap();
        assert_eq!((r.scope, r.dim, r.limit), (Scope::Key, Dim::Rpm, 7));
        assert!(r.retry_after_ms > 0 && r.retry_after_ms <= 60_000);
    }

    #[tokio::test]
    async fn token_estimates_are_corrected_by_real_usage() {
        let registry = LimiterRegistry::default();
        let t = table(
            &registry,
            vec![pb::RateLimitRule {
                tokens_per_day: 1_000,
                ..rule("tenant", "")
            }],
        );
        let limits = t.for_key("ck").unwrap();
        // Estimated 600: a second call does not fit…
        let a = admit(limits, "md", 600).await.0.unwrap();
        assert!(admit(limits, "md", 600).await.0.is_err());
        // …until the first one turns out to have used 100.
        a.settle(Some(100));
        let (b, headers) = admit(limits, "md", 600).await;
        let b = b.unwrap();
        assert_eq!(headers.tokens.unwrap().remaining, 300);
        // A call that used more than estimated is charged the excess.
        b.settle(Some(850));
        let c = &limits.tenant.as_ref().unwrap().state.windows[4];
        assert_eq!(c.available(), 1_000 - 100 - 850);
        assert!(admit(limits, "md", 100).await.0.is_err());
        // An estimate larger than the whole limit never fits.
        let r = admit(limits, "md", 5_000).await.0.unwrap_err();
        assert_eq!(r.dim, Dim::Tpd);
    }

    #[tokio::test]
    async fn concurrency_slots_are_freed_on_drop_and_refusals_give_back() {
        let registry = LimiterRegistry::default();
        let t = table(
            &registry,
            vec![
                pb::RateLimitRule {
                    max_concurrent: 2,
                    requests_per_day: 100,
                    ..rule("key", "ck")
                },
                pb::RateLimitRule {
                    requests_per_day: 3,
                    ..rule("tenant", "")
                },
            ],
        );
        let limits = t.for_key("ck").unwrap();
        let a = admit(limits, "md", 0).await.0.unwrap();
        let b = admit(limits, "md", 0).await.0.unwrap();
        let r = admit(limits, "md", 0).await.0.unwrap_err();
        assert_eq!((r.scope, r.dim), (Scope::Key, Dim::Concurrency));
        drop(a);
        let key_state = &limits.key.as_ref().unwrap().state;
        assert_eq!(key_state.in_flight.load(Ordering::Acquire), 1);
        let c = admit(limits, "md", 0).await.0.unwrap();
        drop((b, c));
        // The tenant's RPD 3 is used up: the key's request is given back.
        let key_rpd = &key_state.windows[2];
        let before = key_rpd.available();
        let r = admit(limits, "md", 0).await.0.unwrap_err();
        assert_eq!((r.scope, r.dim), (Scope::Tenant, Dim::Rpd));
        assert_eq!(key_rpd.available(), before);
        assert_eq!(key_state.in_flight.load(Ordering::Acquire), 0);
    }
}
