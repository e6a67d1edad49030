//! Deletes audit events past their retention, with the same policy type and
//! the same bounded batches as the usage records' retention.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::{Store, StoreResult};
use crate::usage_retention::{NowMs, RetentionPolicy};

const DAY_MS: i64 = 86_400_000;

/// Audit events are kept a year by default.
pub fn default_policy() -> RetentionPolicy {
    RetentionPolicy {
        days: 365,
        interval: Duration::from_secs(3600),
        batch: 1000,
    }
}

/// Deletes every event older than `policy.days` before `now_ms`; returns
/// how many went.
pub async fn sweep(store: &Store, policy: &RetentionPolicy, now_ms: i64) -> StoreResult<u64> {
    if policy.days == 0 {
        return Ok(0);
    }
    let cutoff = now_ms.saturating_sub(i64::from(policy.days) * DAY_MS);
    let batch = policy.batch.max(1);
    let mut total = 0;
    loop {
        let n = store.delete_audit_events_before(cutoff, batch).await?;
        total += n;
        if n < batch.unsigned_abs() {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Sweeps every `policy.interval` until `shutdown`; then waits for
/// `alongside` (the usage retention job), so the server awaits one handle
/// for both.
pub fn spawn_alongside(
    alongside: JoinHandle<()>,
    store: Store,
    policy: RetentionPolicy,
    now_ms: NowMs,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if policy.days == 0 {
            tracing::info!("audit retention disabled: audit events are kept forever");
        } else {
            loop {
                match sweep(&store, &policy, now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        deleted = n,
                        days = policy.days,
                        "deleted audit events past retention"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "audit retention sweep failed; will retry")
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(policy.interval) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            }
        }
        let _ = alongside.await;
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::store::test_backends::test_stores;
    use crate::store::{AuditEvent, AuditQuery};

    #[tokio::test]
    async fn sweep_deletes_only_events_past_retention() {
        let t0 = 1_763_596_800_000_i64;
        for t in test_stores().await {
            for (i, at) in [t0, t0 + 1, t0 + 5 * DAY_MS].into_iter().enumerate() {
                t.store
                    .insert_audit_event(&AuditEvent {
                        id: format!("ae_{i}"),
                        at_ms: at,
                        action: "tenant.create".into(),
                        details: "{}".into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
            let policy = RetentionPolicy {
                days: 2,
                batch: 1,
                ..default_policy()
            };
            let n = sweep(&t.store, &policy, t0 + 3 * DAY_MS).await.unwrap();
            assert_eq!(n, 2, "{}", t.backend);
            let left = t
                .store
                .list_audit_events(&AuditQuery {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(left.len(), 1);
            assert_eq!(left[0].id, "ae_2");
            let keep = RetentionPolicy {
                days: 0,
                ..default_policy()
            };
            assert_eq!(sweep(&t.store, &keep, i64::MAX).await.unwrap(), 0);
        }
    }
}
