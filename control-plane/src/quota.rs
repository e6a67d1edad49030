//! Rate-limit quota slices (docs/rate-limits.md, ADR 0024): the control
//! plane's side of `SyncService.AcquireQuota`. Windows are fixed and aligned
//! to the epoch; for each (limiter, dimension, window) the ledger remembers
//! how much it handed out and never grants past the limit, so the data
//! planes together admit at most the limit per window while a control plane
//! is reachable. The ledger is the `quota_windows` table of the shared
//! database: every replica grants from the same rows, and a restarted
//! replica still knows the grants of windows in progress.

use std::sync::atomic::{AtomicI64, Ordering};

use tollgate_proto::sync::v1 as pb;
use tonic::Status;

use crate::store::quota::QuotaAskRow;
use crate::store::{LimitScope, Store, TenantData};

/// Window lengths a data plane may ask about.
const WINDOWS_MS: [i64; 3] = [1_000, 60_000, 86_400_000];

/// Clock difference tolerated between a data plane and the control plane.
const SKEW_MS: i64 = 30_000;

/// Most asks in one request.
pub const MAX_ASKS: usize = 1_000;

/// How often a replica deletes expired windows.
const PRUNE_EVERY_MS: i64 = 60_000;

/// Grants per (limiter, dimension, window start), kept in the database.
#[derive(Debug)]
pub struct QuotaLedger {
    store: Store,
    last_prune: AtomicI64,
}

impl QuotaLedger {
    pub fn new(store: Store) -> Self {
        QuotaLedger {
            store,
            last_prune: AtomicI64::new(0),
        }
    }

    /// Answers every ask of a request, in order. A database error is
    /// `Unavailable` (retryable): the data plane keeps its local share.
    pub async fn acquire(
        &self,
        asks: &[pb::QuotaAsk],
        now_ms: i64,
    ) -> Result<pb::QuotaGrants, Status> {
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
        let last = self.last_prune.load(Ordering::Relaxed);
        if now_ms - last > PRUNE_EVERY_MS
            && self
                .last_prune
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            if let Err(e) = self.store.prune_quota_windows(now_ms).await {
                tracing::warn!(error = %e, "could not delete expired quota windows");
            }
        }
        // Windows already over (or not begun, beyond the skew) get nothing
        // and touch no row.
        let live = |a: &pb::QuotaAsk| {
            let end_ms = a.window_start_ms.saturating_add(a.window_ms);
            end_ms + SKEW_MS > now_ms && a.window_start_ms <= now_ms + SKEW_MS
        };
        let rows: Vec<QuotaAskRow<'_>> = asks
            .iter()
            .filter(|a| live(a))
            .map(|a| QuotaAskRow {
                limiter: &a.limiter,
                dimension: &a.dimension,
                window_start_ms: a.window_start_ms,
                window_ms: a.window_ms,
                expires_ms: a.window_start_ms.saturating_add(a.window_ms) + SKEW_MS,
                limit: i64::try_from(a.limit).unwrap_or(i64::MAX),
                amount: i64::try_from(a.amount).unwrap_or(i64::MAX),
            })
            .collect();
        let answers = if rows.is_empty() {
            Vec::new()
        } else {
            self.store.acquire_quota(&rows).await.map_err(|e| {
                tracing::warn!(error = %e, "quota ledger unavailable");
                Status::unavailable("quota ledger unavailable; keep the local share and retry")
            })?
        };
        let mut answers = answers.into_iter();
        let grants = asks
            .iter()
            .map(|a| {
                if !live(a) {
                    return pb::QuotaGrant {
                        granted: 0,
                        remaining: 0,
                    };
                }
                let (granted, remaining) = answers.next().unwrap_or((0, 0));
                pb::QuotaGrant {
                    granted: u64::try_from(granted).unwrap_or(0),
                    remaining: u64::try_from(remaining).unwrap_or(0),
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
    use crate::store::test_backends::test_stores;

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

    #[tokio::test]
    async fn never_grants_past_the_limit_of_a_window() {
        for t in test_stores().await {
            let l = QuotaLedger::new(t.store.clone());
            let now = 120_000 + 5;
            let g = l
                .acquire(
                    &[ask("k/t/a", 120_000, 10, 4), ask("k/t/a", 120_000, 10, 4)],
                    now,
                )
                .await
                .unwrap()
                .grants;
            assert_eq!((g[0].granted, g[0].remaining), (4, 6), "{}", t.backend);
            assert_eq!((g[1].granted, g[1].remaining), (4, 2));
            let g = l
                .acquire(&[ask("k/t/a", 120_000, 10, 4)], now)
                .await
                .unwrap()
                .grants;
            assert_eq!((g[0].granted, g[0].remaining), (2, 0));
            let g = l
                .acquire(&[ask("k/t/a", 120_000, 10, 4)], now)
                .await
                .unwrap()
                .grants;
            assert_eq!(g[0].granted, 0);
            // Another limiter, and the next window, start from zero.
            let g = l
                .acquire(&[ask("k/t/b", 120_000, 10, 4)], now)
                .await
                .unwrap()
                .grants;
            assert_eq!(g[0].granted, 4);
            let g = l
                .acquire(&[ask("k/t/a", 180_000, 10, 4)], 180_001)
                .await
                .unwrap()
                .grants;
            assert_eq!(g[0].granted, 4);
            // A window that has not begun (beyond the clock skew) gets nothing.
            let g = l
                .acquire(&[ask("k/t/a", 600_000, 10, 4)], 180_001)
                .await
                .unwrap()
                .grants;
            assert_eq!(g[0].granted, 0);
            // A window long over gets nothing.
            let g = l
                .acquire(&[ask("k/t/a", 0, 10, 4)], now)
                .await
                .unwrap()
                .grants;
            assert_eq!(g[0].granted, 0);
            // A ledger over the same database (a restarted replica) still
            // knows the window in progress.
            let again = QuotaLedger::new(Store::connect(&t.url).await.unwrap());
            let g = again
                .acquire(&[ask("k/t/a", 120_000, 10, 4)], now)
                .await
                .unwrap()
                .grants;
            assert_eq!(g[0].granted, 0, "{}", t.backend);
            // Malformed windows are refused.
            let mut bad = ask("k/t/a", 120_001, 10, 1);
            assert!(l.acquire(&[bad.clone()], now).await.is_err());
            bad.window_start_ms = 120_000;
            bad.window_ms = 7;
            assert!(l.acquire(&[bad], now).await.is_err());
        }
    }

    /// Two replicas (two ledgers, each with its own pool) over one
    /// database, asking concurrently: the total granted per window never
    /// exceeds its limit, and all of it is handed out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_replicas_never_grant_more_than_the_limit_together() {
        for t in test_stores().await {
            let a = std::sync::Arc::new(QuotaLedger::new(t.store.clone()));
            let b = std::sync::Arc::new(QuotaLedger::new(Store::connect(&t.url).await.unwrap()));
            let now = tollgate_core::time::now_ms();
            let start = now - now % 60_000;
            let mut tasks = Vec::new();
            for i in 0..40 {
                let l = if i % 2 == 0 { a.clone() } else { b.clone() };
                tasks.push(tokio::spawn(async move {
                    // Two windows per request, in both orders (no deadlock).
                    let asks = if i % 3 == 0 {
                        vec![ask("k/t/x", start, 50, 3), ask("k/t/y", start, 20, 2)]
                    } else {
                        vec![ask("k/t/y", start, 20, 2), ask("k/t/x", start, 50, 3)]
                    };
                    let g = l.acquire(&asks, now).await.unwrap().grants;
                    if i % 3 == 0 {
                        (g[0].granted, g[1].granted)
                    } else {
                        (g[1].granted, g[0].granted)
                    }
                }));
            }
            let (mut x, mut y) = (0, 0);
            for task in tasks {
                let (gx, gy) = task.await.unwrap();
                x += gx;
                y += gy;
            }
            // 40 × 3 = 120 asked of 50; 40 × 2 = 80 asked of 20.
            assert_eq!((x, y), (50, 20), "{}", t.backend);
        }
    }
}
