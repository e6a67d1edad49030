//! Retention of raw usage records. Rollups are never deleted.

use super::{Store, StoreResult};

impl Store {
    /// Deletes at most `batch` raw records that arrived before
    /// `cutoff_ms`; returns how many went. Bounded so a large backlog never
    /// holds one long transaction (or the SQLite write lock) for long.
    ///
    /// Arrival time, not start time: a record the data plane re-sends (its
    /// ack was lost) arrives again within moments of the first delivery,
    /// while the original is still there to deduplicate it.
    pub async fn delete_usage_records_received_before(
        &self,
        cutoff_ms: i64,
        batch: i64,
    ) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM usage_records WHERE id IN \
             (SELECT id FROM usage_records WHERE received_at_ms < $1 LIMIT $2)",
        )
        .bind(cutoff_ms)
        .bind(batch)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
