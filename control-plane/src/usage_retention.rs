//! Background job that deletes raw usage records past the retention period,
//! in bounded batches. The hourly rollups are kept, so aggregates over any
//! period stay queryable after the itemised records are gone.
//!
//! Safe on several control-plane replicas at once: a delete of rows another
//! replica already removed deletes nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::{Store, StoreResult};

const DAY_MS: i64 = 86_400_000;

/// How long raw records are kept and how the job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Days a raw record is kept after it arrived; 0 keeps records forever.
    pub days: u32,
    /// Time between sweeps.
    pub interval: Duration,
    /// Rows per delete statement.
    pub batch: i64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            days: 30,
            interval: Duration::from_secs(600),
            batch: 1000,
        }
    }
}

/// Current time in epoch ms; injectable so tests need not wait for days.
pub type NowMs = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Deletes every record that arrived more than `policy.days` before `now_ms`,
/// `policy.batch` rows per statement. Returns how many went.
pub async fn sweep(store: &Store, policy: &RetentionPolicy, now_ms: i64) -> StoreResult<u64> {
    if policy.days == 0 {
        return Ok(0);
    }
    let cutoff = now_ms.saturating_sub(i64::from(policy.days) * DAY_MS);
    let batch = policy.batch.max(1);
    let mut total = 0;
    loop {
        let n = store
            .delete_usage_records_received_before(cutoff, batch)
            .await?;
        total += n;
        if n < batch.unsigned_abs() {
            return Ok(total);
        }
        // Let ingestion and queries in between batches.
        tokio::task::yield_now().await;
    }
}

/// Sweeps now and then every `policy.interval` until `shutdown` turns true.
pub fn spawn(
    store: Store,
    policy: RetentionPolicy,
    now_ms: NowMs,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if policy.days == 0 {
            tracing::info!("usage retention disabled: raw usage records are kept forever");
            return;
        }
        loop {
            match sweep(&store, &policy, now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    deleted = n,
                    days = policy.days,
                    "deleted raw usage records past retention"
                ),
                Err(e) => tracing::warn!(error = %e, "usage retention sweep failed; will retry"),
            }
            tokio::select! {
                () = tokio::time::sleep(policy.interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::store::test_backends::test_stores;
    use crate::store::{Dimensions, RequestFilter, RollupQuery, UsageRecord};

    const T0: i64 = 1_763_596_800_000;

    fn rec(id: &str, received: i64) -> UsageRecord {
        UsageRecord {
            id: id.into(),
            tenant_id: "tn_a".into(),
            model: "gpt".into(),
            started_at_ms: received - 5,
            received_at_ms: received,
            status_code: 200,
            ttft_ms: -1,
            ..Default::default()
        }
    }

    async fn raw_count(store: &Store) -> usize {
        let all = RequestFilter {
            since_ms: 0,
            until_ms: i64::MAX,
            ..Default::default()
        };
        store
            .search_usage_records("tn_a", &all, None, 1000)
            .await
            .unwrap()
            .len()
    }

    async fn calls(store: &Store) -> i64 {
        let q = RollupQuery {
            since_ms: 0,
            until_ms: crate::store::hour_floor(i64::MAX / 2),
            group: Dimensions::default(),
            ..Default::default()
        };
        let rows = store
            .query_usage_rollups("tn_a", &q, None, 10)
            .await
            .unwrap();
        rows.iter().map(|r| r.totals.calls).sum()
    }

    #[tokio::test]
    async fn job_deletes_old_raw_records_and_keeps_aggregates() {
        for t in test_stores().await {
            let s = t.store.clone();
            let mut batch: Vec<UsageRecord> = (0..25)
                .map(|i| rec(&format!("ur_old{i:02}"), T0 + i))
                .collect();
            batch.push(rec("ur_new", T0 + 2 * DAY_MS));
            s.insert_usage_records(&batch).await.unwrap();
            assert_eq!((raw_count(&s).await, calls(&s).await), (26, 26));

            // Retention 1 day; the clock says T0 + 1 day 1 hour: the 25 old
            // records are past it, the new one is not.
            let now = Arc::new(AtomicI64::new(T0 + DAY_MS + 3_600_000));
            let clock = now.clone();
            let policy = RetentionPolicy {
                days: 1,
                interval: Duration::from_millis(10),
                batch: 4,
            };
            let (stop, stop_rx) = watch::channel(false);
            let job = spawn(
                s.clone(),
                policy,
                Arc::new(move || clock.load(Ordering::SeqCst)),
                stop_rx,
            );
            let start = std::time::Instant::now();
            while raw_count(&s).await != 1 {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "{}: retention never ran",
                    t.backend
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(calls(&s).await, 26, "{}: aggregates kept", t.backend);
            // Time moves on: the last record goes on a later sweep.
            now.store(T0 + 4 * DAY_MS, Ordering::SeqCst);
            while raw_count(&s).await != 0 {
                assert!(start.elapsed() < Duration::from_secs(10));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(calls(&s).await, 26);
            stop.send(true).unwrap();
            job.await.unwrap();
        }
    }

    #[tokio::test]
    async fn zero_days_keeps_everything() {
        for t in test_stores().await {
            t.store
                .insert_usage_records(&[rec("ur_1", T0)])
                .await
                .unwrap();
            let policy = RetentionPolicy {
                days: 0,
                ..Default::default()
            };
            assert_eq!(sweep(&t.store, &policy, i64::MAX).await.unwrap(), 0);
            assert_eq!(raw_count(&t.store).await, 1);
            let sweeping = RetentionPolicy {
                days: 30,
                batch: 1,
                ..Default::default()
            };
            assert_eq!(
                sweep(&t.store, &sweeping, T0 + 31 * DAY_MS).await.unwrap(),
                1
            );
            assert_eq!(raw_count(&t.store).await, 0);
        }
    }
}
