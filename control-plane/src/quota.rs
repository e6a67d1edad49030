//! Rate-limit quota slices (docs/rate-limits.md): the control plane's side
//! of `SyncService.AcquireQuota`. Windows are fixed and aligned to the
//! epoch; for each (limiter, dimension, window) the ledger remembers how
//! much it handed out and never grants past the limit, so the data planes
//! together admit at most the limit per window while the control plane is
//! reachable. The ledger lives in memory: a window is at most a day long and
//! a restarted control plane only forgets grants of windows in progress
//! (documented in the bound).

use std::collections::HashMap;
use std::sync::Mutex;

use tollgate_proto::sync::v1 as pb;
use tonic::Status;

use crate::store::{LimitScope, TenantData};

/// Window lengths a data plane may ask about.
const WINDOWS_MS: [i64; 3] = [1_000, 60_000, 86_400_000];

/// Clock difference tolerated between a data plane and the control plane.
const SKEW_MS: i64 = 30_000;

/// Most asks in one request.
pub const MAX_ASKS: usize = 1_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    end_ms: i64,
    granted: u64,
}

/// (limiter, dimension, window start).
type WindowKey = (String, String, i64);

/// Grants per window, and when expired windows were last dropped.
type Windows = (HashMap<WindowKey, Window>, i64);

/// Grants per (limiter, dimension, window start).
#[derive(Debug, Default)]
pub struct QuotaLedger {
    windows: Mutex<Windows>,
}

impl QuotaLedger {
    pub fn new() -> Self {
        QuotaLedger::default()
    }

    /// Answers every ask of a request, in order.
    pub fn acquire(&self, asks: &[pb::QuotaAsk], now_ms: i64) -> Result<pb::QuotaGrants, Status> {
        if asks.len() > MAX_ASKS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_ASKS} asks per request"
            )));
        }
        for a in asks {
            if a.limiter.is_empty() || a.dimension.is_empty() {
                return Err(Status::invalid_argument(
                    "limiter and dimension are required",
                ));
            }
            if !WINDOWS_MS.contains(&a.window_ms) || a.window_start_ms % a.window_ms != 0 {
                return Err(Status::invalid_argument(
                    "window_ms must be 1000, 60000 or 86400000 and window_start_ms a multiple of it",
                ));
            }
        }
        let mut guard = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (windows, last_prune) = &mut *guard;
        if now_ms - *last_prune > 1_000 {
            windows.retain(|_, w| w.end_ms + SKEW_MS > now_ms);
            *last_prune = now_ms;
        }
        let grants = asks
            .iter()
            .map(|a| {
                let end_ms = a.window_start_ms.saturating_add(a.window_ms);
                // A window already over (or not begun, beyond the skew)
                // gets nothing.
                if end_ms + SKEW_MS <= now_ms || a.window_start_ms > now_ms + SKEW_MS {
                    return pb::QuotaGrant {
                        granted: 0,
                        remaining: 0,
                    };
                }
                let w = windows
                    .entry((a.limiter.clone(), a.dimension.clone(), a.window_start_ms))
                    .or_insert(Window { end_ms, granted: 0 });
                let granted = a.amount.min(a.limit.saturating_sub(w.granted));
                w.granted += granted;
                pb::QuotaGrant {
                    granted,
                    remaining: a.limit.saturating_sub(w.granted),
                }
            })
            .collect();
        Ok(pb::QuotaGrants { grants })
    }
}

/// The tenant's limit sets as snapshot rules (tiers already resolved by the
/// store).
pub fn rate_limit_rules(t: &TenantData) -> Vec<pb::RateLimitRule> {
    t.rate_limits
        .iter()
        .filter(|r| {
            // A set on a deleted model or revoked key applies to nothing.
            match r.scope {
                LimitScope::Tenant => true,
                LimitScope::Model => t.models.iter().any(|m| m.id == r.target_id),
                LimitScope::Key => t.keys.iter().any(|k| k.id == r.target_id),
            }
        })
        .map(|r| pb::RateLimitRule {
            scope: r.scope.as_str().to_string(),
            target_id: r.target_id.clone(),
            requests_per_second: r.limits.requests_per_second,
            requests_per_minute: r.limits.requests_per_minute,
            requests_per_day: r.limits.requests_per_day,
            tokens_per_minute: r.limits.tokens_per_minute,
            tokens_per_day: r.limits.tokens_per_day,
            max_concurrent: r.limits.max_concurrent,
            queue_ms: r.limits.queue_ms,
            queue_depth: r.limits.queue_depth,
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ask(limiter: &str, start: i64, limit: u64, amount: u64) -> pb::QuotaAsk {
        pb::QuotaAsk {
            limiter: limiter.into(),
            dimension: "rpm".into(),
            window_start_ms: start,
            window_ms: 60_000,
            limit,
            amount,
        }
    }

    #[test]
    fn never_grants_past_the_limit_of_a_window() {
        let l = QuotaLedger::new();
        let now = 120_000 + 5;
        let g = l
            .acquire(
                &[ask("k/t/a", 120_000, 10, 4), ask("k/t/a", 120_000, 10, 4)],
                now,
            )
            .unwrap()
            .grants;
        assert_eq!((g[0].granted, g[0].remaining), (4, 6));
        assert_eq!((g[1].granted, g[1].remaining), (4, 2));
        let g = l
            .acquire(&[ask("k/t/a", 120_000, 10, 4)], now)
            .unwrap()
            .grants;
        assert_eq!((g[0].granted, g[0].remaining), (2, 0));
        let g = l
            .acquire(&[ask("k/t/a", 120_000, 10, 4)], now)
            .unwrap()
            .grants;
        assert_eq!(g[0].granted, 0);
        // Another limiter, and the next window, start from zero.
        let g = l
            .acquire(&[ask("k/t/b", 120_000, 10, 4)], now)
            .unwrap()
            .grants;
        assert_eq!(g[0].granted, 4);
        let g = l
            .acquire(&[ask("k/t/a", 180_000, 10, 4)], 180_001)
            .unwrap()
            .grants;
        assert_eq!(g[0].granted, 4);
        // A window that has not begun (beyond the clock skew) gets nothing.
        let g = l
            .acquire(&[ask("k/t/a", 600_000, 10, 4)], 180_001)
            .unwrap()
            .grants;
        assert_eq!(g[0].granted, 0);
        // A window long over gets nothing.
        let g = l.acquire(&[ask("k/t/a", 0, 10, 4)], now).unwrap().grants;
        assert_eq!(g[0].granted, 0);
        // Malformed windows are refused.
        let mut bad = ask("k/t/a", 120_001, 10, 1);
        assert!(l.acquire(&[bad.clone()], now).is_err());
        bad.window_start_ms = 120_000;
        bad.window_ms = 7;
        assert!(l.acquire(&[bad], now).is_err());
    }
}
