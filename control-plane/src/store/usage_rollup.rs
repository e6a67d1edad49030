//! Hourly usage rollups: incremental aggregates maintained at ingestion.
//!
//! A batch of newly inserted records (never duplicates) is summed in memory
//! per rollup key, then each key is upserted with
//! `ON CONFLICT (...) DO UPDATE SET x = t.x + excluded.x` in the transaction
//! that inserted the records, so a rollup always equals the sum of what was
//! stored. Keys are upserted in sorted order: concurrent batches lock rollup
//! rows in the same order and cannot deadlock on Postgres.
//!
//! Adding a measure (e.g. cache hits) is one field in [`UsageTotals`], one
//! line in [`MEASURES`], a migration adding the column, and a proto field.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{StoreResult, UsageRecord};

pub const HOUR_MS: i64 = 3_600_000;

/// Start of the UTC hour holding `ms`.
pub fn hour_floor(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// The summable measures of a set of calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageTotals {
    pub calls: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_micros: i64,
    pub latency_ms_sum: i64,
    pub ttft_ms_sum: i64,
    pub ttft_count: i64,
}

/// A measure: its column in `usage_rollup_hourly`, its value for one
/// record, and where it lives in [`UsageTotals`].
pub(crate) struct Measure {
    pub column: &'static str,
    pub of_record: fn(&UsageRecord) -> i64,
    pub get: fn(&UsageTotals) -> i64,
    pub set: fn(&mut UsageTotals, i64),
}

/// Whether a call counts as an error in the aggregates.
pub(crate) fn is_error(r: &UsageRecord) -> bool {
    r.status_code >= 400
}

pub(crate) const MEASURES: &[Measure] = &[
    Measure {
        column: "calls",
        of_record: |_| 1,
        get: |t| t.calls,
        set: |t, v| t.calls = v,
    },
    Measure {
        column: "errors",
        of_record: |r| i64::from(is_error(r)),
        get: |t| t.errors,
        set: |t, v| t.errors = v,
    },
    Measure {
        column: "prompt_tokens",
        of_record: |r| r.usage.prompt_tokens,
        get: |t| t.prompt_tokens,
        set: |t, v| t.prompt_tokens = v,
    },
    Measure {
        column: "completion_tokens",
        of_record: |r| r.usage.completion_tokens,
        get: |t| t.completion_tokens,
        set: |t, v| t.completion_tokens = v,
    },
    Measure {
        column: "cache_read_tokens",
        of_record: |r| r.usage.cache_read_tokens,
        get: |t| t.cache_read_tokens,
        set: |t, v| t.cache_read_tokens = v,
    },
    Measure {
        column: "cache_write_tokens",
        of_record: |r| r.usage.cache_write_tokens,
        get: |t| t.cache_write_tokens,
        set: |t, v| t.cache_write_tokens = v,
    },
    Measure {
        column: "reasoning_tokens",
        of_record: |r| r.usage.reasoning_tokens,
        get: |t| t.reasoning_tokens,
        set: |t, v| t.reasoning_tokens = v,
    },
    Measure {
        column: "cost_micros",
        of_record: |r| r.cost_micros,
        get: |t| t.cost_micros,
        set: |t, v| t.cost_micros = v,
    },
    Measure {
        column: "latency_ms_sum",
        of_record: |r| r.latency_ms,
        get: |t| t.latency_ms_sum,
        set: |t, v| t.latency_ms_sum = v,
    },
    Measure {
        column: "ttft_ms_sum",
        of_record: |r| r.ttft_ms.max(0),
        get: |t| t.ttft_ms_sum,
        set: |t, v| t.ttft_ms_sum = v,
    },
    Measure {
        column: "ttft_count",
        of_record: |r| i64::from(r.ttft_ms >= 0),
        get: |t| t.ttft_count,
        set: |t, v| t.ttft_count = v,
    },
];

impl UsageTotals {
    /// The measures of one call.
    pub fn of_record(r: &UsageRecord) -> Self {
        let mut t = Self::default();
        for m in MEASURES {
            (m.set)(&mut t, (m.of_record)(r));
        }
        t
    }

    /// Adds `other` measure by measure (saturating: a counter never wraps).
    pub fn add(&mut self, other: &Self) {
        for m in MEASURES {
            let v = (m.get)(self).saturating_add((m.get)(other));
            (m.set)(self, v);
        }
    }

    /// Reads the measure columns of a query row (aliased by column name).
    pub(crate) fn from_row(row: &AnyRow) -> StoreResult<Self> {
        let mut t = Self::default();
        for m in MEASURES {
            (m.set)(&mut t, row.try_get(m.column)?);
        }
        Ok(t)
    }
}

/// `CAST(COALESCE(SUM(c), 0) AS BIGINT) AS c, ...` for every measure
/// (Postgres' SUM of BIGINT is NUMERIC, which `Any` cannot decode).
pub(crate) fn sum_columns() -> String {
    MEASURES
        .iter()
        .map(|m| format!("CAST(COALESCE(SUM({0}), 0) AS BIGINT) AS {0}", m.column))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RollupKey {
    tenant_id: String,
    hour_ms: i64,
    model: String,
    key_id: String,
    provider_id: String,
}

/// The rollup increments of the records a batch newly inserted.
#[derive(Debug, Default)]
pub(crate) struct RollupBatch {
    deltas: BTreeMap<RollupKey, UsageTotals>,
}

impl RollupBatch {
    pub fn add(&mut self, r: &UsageRecord) {
        let key = RollupKey {
            tenant_id: r.tenant_id.clone(),
            hour_ms: hour_floor(r.started_at_ms),
            model: r.model.clone(),
            key_id: r.key_id.clone(),
            provider_id: r.provider_id.clone(),
        };
        self.deltas
            .entry(key)
            .or_default()
            .add(&UsageTotals::of_record(r));
    }

    /// Upserts every increment, in key order, inside `tx`.
    pub async fn upsert(self, tx: &mut Transaction<'static, Any>) -> StoreResult<()> {
        if self.deltas.is_empty() {
            return Ok(());
        }
        let columns: Vec<&str> = MEASURES.iter().map(|m| m.column).collect();
        let placeholders: Vec<String> = (0..columns.len()).map(|i| format!("${}", i + 6)).collect();
        let updates: Vec<String> = columns
            .iter()
            .map(|c| format!("{c} = usage_rollup_hourly.{c} + excluded.{c}"))
            .collect();
        let sql = format!(
            "INSERT INTO usage_rollup_hourly (tenant_id, hour_ms, model, key_id, provider_id, {}) \
             VALUES ($1, $2, $3, $4, $5, {}) \
             ON CONFLICT (tenant_id, hour_ms, model, key_id, provider_id) DO UPDATE SET {}",
            columns.join(", "),
            placeholders.join(", "),
            updates.join(", ")
        );
        for (key, totals) in self.deltas {
            let mut q = sqlx::query(&sql)
                .bind(key.tenant_id)
                .bind(key.hour_ms)
                .bind(key.model)
                .bind(key.key_id)
                .bind(key.provider_id);
            for m in MEASURES {
                q = q.bind((m.get)(&totals));
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_floor_in_utc() {
        assert_eq!(hour_floor(0), 0);
        assert_eq!(hour_floor(HOUR_MS - 1), 0);
        assert_eq!(hour_floor(HOUR_MS), HOUR_MS);
        assert_eq!(hour_floor(-1), -HOUR_MS);
    }

    #[test]
    fn totals_of_a_record() {
        let r = UsageRecord {
            status_code: 502,
            latency_ms: 40,
            ttft_ms: -1,
            cost_micros: 7,
            ..Default::default()
        };
        let t = UsageTotals::of_record(&r);
        assert_eq!((t.calls, t.errors, t.latency_ms_sum), (1, 1, 40));
        assert_eq!((t.ttft_ms_sum, t.ttft_count, t.cost_micros), (0, 0, 7));
        let mut sum = t;
        sum.add(&UsageTotals::of_record(&UsageRecord {
            status_code: 200,
            ttft_ms: 0,
            ..Default::default()
        }));
        assert_eq!((sum.calls, sum.errors, sum.ttft_count), (2, 1, 1));
    }
}
