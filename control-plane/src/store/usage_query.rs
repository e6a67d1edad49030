//! Usage queries: aggregates from the hourly rollups (never from raw
//! records) and the request log (raw records, newest first). Both use keyset
//! pagination, so a page boundary is stable while new calls arrive.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::usage::{record_from_row, RECORD_COLUMNS};
use super::usage_rollup::{sum_columns, UsageTotals, HOUR_MS, MEASURES};
use super::{Store, StoreError, StoreResult, UsageRecord};

const DAY_MS: i64 = 24 * HOUR_MS;

/// Time grouping of an aggregate query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeBucket {
    #[default]
    None,
    Hour,
    /// Days starting at local midnight of a fixed offset east of UTC
    /// (whole hours).
    Day {
        offset_hours: i32,
    },
}

/// Which dimensions the rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dimensions {
    pub time: TimeBucket,
    pub model: bool,
    pub key: bool,
    pub provider: bool,
}

/// An aggregate query over `[since_ms, until_ms)`; both must be whole hours.
#[derive(Debug, Clone, Default)]
pub struct RollupQuery {
    pub since_ms: i64,
    pub until_ms: i64,
    pub group: Dimensions,
    /// Exact-match filters; `None`: all.
    pub model: Option<String>,
    pub key_id: Option<String>,
    pub provider_id: Option<String>,
}

/// Position after the last row of a page (its group key).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RollupCursor {
    pub bucket_start_ms: i64,
    pub model: String,
    pub key_id: String,
    pub provider_id: String,
}

/// One group: empty/0 in the dimensions not grouped by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RollupRow {
    pub bucket_start_ms: i64,
    pub model: String,
    pub key_id: String,
    pub provider_id: String,
    pub totals: UsageTotals,
}

impl RollupRow {
    pub fn cursor(&self) -> RollupCursor {
        RollupCursor {
            bucket_start_ms: self.bucket_start_ms,
            model: self.model.clone(),
            key_id: self.key_id.clone(),
            provider_id: self.provider_id.clone(),
        }
    }
}

/// Filters of the request log over `[since_ms, until_ms)` of call start.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub since_ms: i64,
    pub until_ms: i64,
    pub model: Option<String>,
    pub key_id: Option<String>,
    pub provider_id: Option<String>,
    pub status_code: Option<u32>,
    pub errors_only: bool,
    pub error_code: Option<String>,
}

/// Position after the last record of a page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestCursor {
    pub started_at_ms: i64,
    pub id: String,
}

enum Bind {
    Int(i64),
    Text(String),
}

/// Collects `$N` parameters while a statement is assembled.
#[derive(Default)]
struct Params(Vec<Bind>);

impl Params {
    fn int(&mut self, v: i64) -> String {
        self.0.push(Bind::Int(v));
        format!("${}", self.0.len())
    }

    fn text(&mut self, v: &str) -> String {
        self.0.push(Bind::Text(v.to_owned()));
        format!("${}", self.0.len())
    }

    async fn fetch_all(self, sql: &str, store: &Store) -> StoreResult<Vec<AnyRow>> {
        let mut q = sqlx::query(sql);
        for b in self.0 {
            q = match b {
                Bind::Int(v) => q.bind(v),
                Bind::Text(v) => q.bind(v),
            };
        }
        Ok(q.fetch_all(&store.pool).await?)
    }
}

impl Store {
    /// One page (at most `limit` rows) of aggregates after `after`, ordered
    /// by bucket, model, key, provider. Reads `usage_rollup_hourly` only.
    pub async fn query_usage_rollups(
        &self,
        tenant_id: &str,
        query: &RollupQuery,
        after: Option<&RollupCursor>,
        limit: i64,
    ) -> StoreResult<Vec<RollupRow>> {
        if query.since_ms % HOUR_MS != 0 || query.until_ms % HOUR_MS != 0 {
            return Err(StoreError::Invalid(
                "usage windows must start and end on whole hours".into(),
            ));
        }
        let mut p = Params::default();
        let tenant = p.text(tenant_id);
        let since = p.int(query.since_ms);
        let until = p.int(query.until_ms);
        let mut filters =
            format!("tenant_id = {tenant} AND hour_ms >= {since} AND hour_ms < {until}");
        for (column, value) in [
            ("model", &query.model),
            ("key_id", &query.key_id),
            ("provider_id", &query.provider_id),
        ] {
            if let Some(v) = value {
                filters.push_str(&format!(" AND {column} = {}", p.text(v)));
            }
        }
        let g = query.group;
        let bucket = match g.time {
            TimeBucket::None => "CAST(0 AS BIGINT)".to_owned(),
            TimeBucket::Hour => "hour_ms".to_owned(),
            TimeBucket::Day { offset_hours } => {
                // Shift so local midnight is a multiple of a day, floor, shift
                // back. hour_ms + shift stays positive for any real time.
                let shift = i64::from(offset_hours) * HOUR_MS;
                format!("((hour_ms + {shift}) / {DAY_MS}) * {DAY_MS} - {shift}")
            }
        };
        let dim = |on: bool, column: &str| {
            if on {
                column.to_owned()
            } else {
                "''".to_owned()
            }
        };
        let mut group_by: Vec<String> = Vec::new();
        if g.time != TimeBucket::None {
            group_by.push(bucket.clone());
        }
        for (on, column) in [
            (g.model, "model"),
            (g.key, "key_id"),
            (g.provider, "provider_id"),
        ] {
            if on {
                group_by.push(column.to_owned());
            }
        }
        let group_clause = if group_by.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", group_by.join(", "))
        };
        let mut outer = "g.calls > 0".to_owned();
        if let Some(c) = after {
            let b = p.int(c.bucket_start_ms);
            let m = p.text(&c.model);
            let k = p.text(&c.key_id);
            let v = p.text(&c.provider_id);
            outer.push_str(&format!(
                " AND (g.bucket_start_ms, g.model, g.key_id, g.provider_id) > ({b}, {m}, {k}, {v})"
            ));
        }
        let lim = p.int(limit);
        let measure_cols: Vec<String> =
            MEASURES.iter().map(|m| format!("g.{}", m.column)).collect();
        let sql = format!(
            "SELECT g.bucket_start_ms, g.model, g.key_id, g.provider_id, {measures} FROM (\
               SELECT {bucket} AS bucket_start_ms, {model} AS model, {key} AS key_id, \
                 {provider} AS provider_id, {sums} \
               FROM usage_rollup_hourly WHERE {filters}{group_clause}\
             ) g WHERE {outer} \
             ORDER BY g.bucket_start_ms, g.model, g.key_id, g.provider_id LIMIT {lim}",
            measures = measure_cols.join(", "),
            model = dim(g.model, "model"),
            key = dim(g.key, "key_id"),
            provider = dim(g.provider, "provider_id"),
            sums = sum_columns(),
        );
        p.fetch_all(&sql, self)
            .await?
            .iter()
            .map(|row| {
                Ok(RollupRow {
                    bucket_start_ms: row.try_get("bucket_start_ms")?,
                    model: row.try_get("model")?,
                    key_id: row.try_get("key_id")?,
                    provider_id: row.try_get("provider_id")?,
                    totals: UsageTotals::from_row(row)?,
                })
            })
            .collect()
    }

    /// One page of the request log after `after`, newest first.
    pub async fn search_usage_records(
        &self,
        tenant_id: &str,
        filter: &RequestFilter,
        after: Option<&RequestCursor>,
        limit: i64,
    ) -> StoreResult<Vec<UsageRecord>> {
        let mut p = Params::default();
        let tenant = p.text(tenant_id);
        let since = p.int(filter.since_ms);
        let until = p.int(filter.until_ms);
        let mut filters = format!(
            "tenant_id = {tenant} AND started_at_ms >= {since} AND started_at_ms < {until}"
        );
        for (column, value) in [
            ("model", &filter.model),
            ("key_id", &filter.key_id),
            ("provider_id", &filter.provider_id),
            ("error_code", &filter.error_code),
        ] {
            if let Some(v) = value {
                filters.push_str(&format!(" AND {column} = {}", p.text(v)));
            }
        }
        if let Some(s) = filter.status_code {
            filters.push_str(&format!(" AND status_code = {}", p.int(i64::from(s))));
        }
        if filter.errors_only {
            filters.push_str(" AND status_code >= 400");
        }
        if let Some(c) = after {
            let t = p.int(c.started_at_ms);
            let id = p.text(&c.id);
            filters.push_str(&format!(
                " AND (started_at_ms < {t} OR (started_at_ms = {t} AND id < {id}))"
            ));
        }
        let lim = p.int(limit);
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM usage_records WHERE {filters} \
             ORDER BY started_at_ms DESC, id DESC LIMIT {lim}"
        );
        p.fetch_all(&sql, self)
            .await?
            .iter()
            .map(record_from_row)
            .collect()
    }
}
