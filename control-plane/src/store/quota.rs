//! The rate-limit quota ledger in the database (docs/rate-limits.md,
//! ADR 0024): shared by every control-plane replica and kept across
//! restarts, so grants of one window never exceed its limit cluster-wide.

use sqlx::Row;

use super::{Store, StoreResult};

/// One validated ask: how much of `limit` to grant in a window.
#[derive(Debug, Clone)]
pub struct QuotaAskRow<'a> {
    pub limiter: &'a str,
    pub dimension: &'a str,
    pub window_start_ms: i64,
    pub window_ms: i64,
    /// Rows are deleted after this time.
    pub expires_ms: i64,
    pub limit: i64,
    pub amount: i64,
}

impl Store {
    /// Grants every ask in one transaction; returns (granted, remaining)
    /// per ask, in order. Each window's row is locked by a write before it
    /// is read (Postgres row lock; SQLite's write lock), so concurrent
    /// grants from any number of replicas are serialised per window and
    /// never add up past the limit. Rows are visited in key order so two
    /// requests over the same windows cannot deadlock.
    pub async fn acquire_quota(&self, asks: &[QuotaAskRow<'_>]) -> StoreResult<Vec<(i64, i64)>> {
        let mut order: Vec<usize> = (0..asks.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&asks[a], &asks[b]);
            (x.limiter, x.dimension, x.window_start_ms).cmp(&(
                y.limiter,
                y.dimension,
                y.window_start_ms,
            ))
        });
        let mut out = vec![(0i64, 0i64); asks.len()];
        let mut tx = self.pool.begin().await?;
        for i in order {
            let a = &asks[i];
            sqlx::query(
                "INSERT INTO quota_windows (limiter, dimension, window_start_ms, window_ms, granted, expires_ms) \
                 VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT DO NOTHING",
            )
            .bind(a.limiter)
            .bind(a.dimension)
            .bind(a.window_start_ms)
            .bind(a.window_ms)
            .bind(a.expires_ms)
            .execute(&mut *tx)
            .await?;
            // Lock the row (a no-op write), then read what is granted.
            sqlx::query(
                "UPDATE quota_windows SET granted = granted \
                 WHERE limiter = $1 AND dimension = $2 AND window_start_ms = $3",
            )
            .bind(a.limiter)
            .bind(a.dimension)
            .bind(a.window_start_ms)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query(
                "SELECT granted FROM quota_windows \
                 WHERE limiter = $1 AND dimension = $2 AND window_start_ms = $3",
            )
            .bind(a.limiter)
            .bind(a.dimension)
            .bind(a.window_start_ms)
            .fetch_one(&mut *tx)
            .await?;
            let before: i64 = row.try_get("granted")?;
            let grant = a.amount.min((a.limit - before).max(0)).max(0);
            if grant > 0 {
                sqlx::query(
                    "UPDATE quota_windows SET granted = granted + $4 \
                     WHERE limiter = $1 AND dimension = $2 AND window_start_ms = $3",
                )
                .bind(a.limiter)
                .bind(a.dimension)
                .bind(a.window_start_ms)
                .bind(grant)
                .execute(&mut *tx)
                .await?;
            }
            out[i] = (grant, (a.limit - before - grant).max(0));
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Deletes windows that ended before `now_ms` (with their skew
    /// allowance already in `expires_ms`). Returns how many.
    pub async fn prune_quota_windows(&self, now_ms: i64) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM quota_windows WHERE expires_ms < $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}
