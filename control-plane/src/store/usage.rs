//! Usage records reported by data planes, and the aggregates over them.
//! Ingestion is idempotent on the data plane's record id.

use sqlx::any::AnyRow;
use sqlx::Row;
use tollgate_core::usage::Usage;

use super::{from_bool, to_bool, Store, StoreResult};

/// One call as metered by a data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub id: String,
    pub request_id: String,
    pub tenant_id: String,
    pub key_id: String,
    pub model: String,
    pub provider_id: String,
    pub upstream_model: String,
    pub started_at_ms: i64,
    pub latency_ms: i64,
    pub status_code: u32,
    pub error_code: String,
    pub stream: bool,
    pub usage: Usage,
    pub cost_micros: i64,
    /// Data plane that reported the record.
    pub node_id: String,
    pub received_at_ms: i64,
    /// Upstream attempts (retries, failovers), in order.
    pub attempts: Vec<UsageAttempt>,
    /// Answered from the response cache: the share of the full price billed
    /// (basis points); `usage` holds the tokens saved.
    pub cache_hit: Option<u32>,
    /// Billing lease the call was reserved from; empty when none.
    pub lease_id: String,
    /// Lease of the key's budget the call was also reserved from.
    pub key_lease_id: String,
    /// Time to the first chunk sent to the caller; -1: none.
    pub ttft_ms: i64,
    /// Endpoint called (chat.completions, messages, ...).
    pub api: String,
    /// Guardrail verdicts (guardrails; never the matched text).
    pub guardrail_verdicts: Vec<GuardrailVerdictRow>,
}

/// One guardrail verdict of a call, stored as JSON with its record.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GuardrailVerdictRow {
    pub name: String,
    pub action: String,
    pub category: String,
    pub direction: String,
}

impl Default for UsageRecord {
    /// Empty, with no time to first token (`ttft_ms` -1, not 0).
    fn default() -> Self {
        Self {
            id: String::new(),
            request_id: String::new(),
            tenant_id: String::new(),
            key_id: String::new(),
            model: String::new(),
            provider_id: String::new(),
            upstream_model: String::new(),
            started_at_ms: 0,
            latency_ms: 0,
            status_code: 0,
            error_code: String::new(),
            stream: false,
            usage: Usage::default(),
            cost_micros: 0,
            node_id: String::new(),
            received_at_ms: 0,
            attempts: Vec::new(),
            ttft_ms: -1,
            api: String::new(),
            guardrail_verdicts: Vec::new(),
            lease_id: String::new(),
            key_lease_id: String::new(),
            cache_hit: None,
        }
    }
}

/// One upstream attempt of a call, stored as JSON with its record.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct UsageAttempt {
    pub provider_id: String,
    pub upstream_model: String,
    pub status_code: u32,
    pub latency_ms: i64,
    pub error_code: String,
}

/// Window and grouping of a usage summary; times are epoch ms, `[since, until)`,
/// widened to whole hours (the rollups' resolution).
#[derive(Debug, Clone, Copy)]
pub struct UsageFilter {
    pub since_ms: i64,
    pub until_ms: i64,
    pub by_key: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageSummaryRow {
    pub model: String,
    /// Empty unless grouped by key.
    pub key_id: String,
    pub calls: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_micros: i64,
}

const SUMMARY_PAGE: i64 = 1000;

pub(super) const RECORD_COLUMNS: &str = "id, request_id, tenant_id, key_id, model, provider_id, \
     upstream_model, started_at_ms, latency_ms, status_code, error_code, stream, prompt_tokens, \
     completion_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_micros, \
     node_id, received_at_ms, attempts, ttft_ms, api, guardrail_verdicts, cache_hit, cache_hit_cost_bps";

pub(super) fn record_from_row(row: &AnyRow) -> StoreResult<UsageRecord> {
    let status: i64 = row.try_get("status_code")?;
    Ok(UsageRecord {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        tenant_id: row.try_get("tenant_id")?,
        key_id: row.try_get("key_id")?,
        model: row.try_get("model")?,
        provider_id: row.try_get("provider_id")?,
        upstream_model: row.try_get("upstream_model")?,
        started_at_ms: row.try_get("started_at_ms")?,
        latency_ms: row.try_get("latency_ms")?,
        status_code: u32::try_from(status).unwrap_or(0),
        error_code: row.try_get("error_code")?,
        stream: to_bool(row.try_get("stream")?),
        usage: Usage {
            prompt_tokens: row.try_get("prompt_tokens")?,
            completion_tokens: row.try_get("completion_tokens")?,
            cache_read_tokens: row.try_get("cache_read_tokens")?,
            cache_write_tokens: row.try_get("cache_write_tokens")?,
            reasoning_tokens: row.try_get("reasoning_tokens")?,
        },
        cost_micros: row.try_get("cost_micros")?,
        node_id: row.try_get("node_id")?,
        received_at_ms: row.try_get("received_at_ms")?,
        attempts: {
            let text: String = row.try_get("attempts")?;
            if text.is_empty() {
                Vec::new()
            } else {
                serde_json::from_str(&text).unwrap_or_default()
            }
        },
        ttft_ms: row.try_get("ttft_ms")?,
        api: row.try_get("api")?,
        guardrail_verdicts: {
            let text: String = row.try_get("guardrail_verdicts")?;
            if text.is_empty() {
                Vec::new()
            } else {
                serde_json::from_str(&text).unwrap_or_default()
            }
        },
        lease_id: String::new(),
        key_lease_id: String::new(),
        cache_hit: to_bool(row.try_get("cache_hit")?).then(|| {
            u32::try_from(row.try_get::<i64, _>("cache_hit_cost_bps").unwrap_or(0)).unwrap_or(0)
        }),
    })
}

impl Store {
    /// Stores a batch in one transaction. Returns how many ids were already
    /// present (duplicates are acknowledged, not stored twice).
    /// New records also update the hourly rollups, in the same transaction.
    pub async fn insert_usage_records(&self, records: &[UsageRecord]) -> StoreResult<u32> {
        let mut tx = self.pool.begin().await?;
        let mut duplicates = 0_u32;
        let mut rollups = super::usage_rollup::RollupBatch::default();
        let mut status = super::status::StatusBatch::default();
        for r in records {
            let done = sqlx::query(&format!(
                "INSERT INTO usage_records ({RECORD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, \
                 $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26) \
                 ON CONFLICT (id) DO NOTHING"
            ))
            .bind(&r.id)
            .bind(&r.request_id)
            .bind(&r.tenant_id)
            .bind(&r.key_id)
            .bind(&r.model)
            .bind(&r.provider_id)
            .bind(&r.upstream_model)
            .bind(r.started_at_ms)
            .bind(r.latency_ms)
            .bind(i64::from(r.status_code))
            .bind(&r.error_code)
            .bind(from_bool(r.stream))
            .bind(r.usage.prompt_tokens)
            .bind(r.usage.completion_tokens)
            .bind(r.usage.cache_read_tokens)
            .bind(r.usage.cache_write_tokens)
            .bind(r.usage.reasoning_tokens)
            .bind(r.cost_micros)
            .bind(&r.node_id)
            .bind(r.received_at_ms)
            .bind(if r.attempts.is_empty() {
                String::new()
            } else {
                serde_json::to_string(&r.attempts).unwrap_or_default()
            })
            .bind(r.ttft_ms)
            .bind(&r.api)
            .bind(if r.guardrail_verdicts.is_empty() {
                String::new()
            } else {
                serde_json::to_string(&r.guardrail_verdicts).unwrap_or_default()
            })
            .bind(from_bool(r.cache_hit.is_some()))
            .bind(i64::from(r.cache_hit.unwrap_or(0)))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                duplicates += 1;
            } else {
                rollups.add(r);
                status.add(r);
                // Billing: charged once, with the record (store/billing.rs).
                super::billing::charge_usage(&mut tx, r).await?;
            }
        }
        rollups.upsert(&mut tx).await?;
        status
            .upsert(&mut tx, tollgate_core::time::now_ms())
            .await?;
        tx.commit().await?;
        Ok(duplicates)
    }

    /// Aggregates per model (and key) of one tenant over `[since, until)`
    /// widened to whole hours, read from the hourly rollups.
    pub async fn usage_summary(
        &self,
        tenant_id: &str,
        filter: UsageFilter,
    ) -> StoreResult<Vec<UsageSummaryRow>> {
        let query = super::RollupQuery {
            since_ms: super::hour_floor(filter.since_ms),
            until_ms: super::hour_floor(filter.until_ms.saturating_add(super::HOUR_MS - 1)),
            group: super::Dimensions {
                model: true,
                key: filter.by_key,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut out: Vec<UsageSummaryRow> = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .query_usage_rollups(tenant_id, &query, after.as_ref(), SUMMARY_PAGE)
                .await?;
            after = page.last().map(super::RollupRow::cursor);
            let done = (page.len() as i64) < SUMMARY_PAGE;
            out.extend(page.into_iter().map(|r| UsageSummaryRow {
                model: r.model,
                key_id: r.key_id,
                calls: r.totals.calls,
                errors: r.totals.errors,
                prompt_tokens: r.totals.prompt_tokens,
                completion_tokens: r.totals.completion_tokens,
                cost_micros: r.totals.cost_micros,
            }));
            if done {
                return Ok(out);
            }
        }
    }

    /// The newest `limit` records of a tenant.
    pub async fn list_usage_records(
        &self,
        tenant_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<UsageRecord>> {
        sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM usage_records WHERE tenant_id = $1 \
             ORDER BY started_at_ms DESC, id DESC LIMIT $2"
        ))
        .bind(tenant_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(record_from_row)
        .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rec(id: &str, model: &str, key: &str, started: i64, status: u32) -> UsageRecord {
        UsageRecord {
            id: id.into(),
            request_id: format!("req-{id}"),
            tenant_id: "tn_a".into(),
            key_id: key.into(),
            model: model.into(),
            provider_id: "pv_1".into(),
            upstream_model: model.into(),
            started_at_ms: started,
            latency_ms: 12,
            status_code: status,
            error_code: String::new(),
            stream: true,
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                cache_read_tokens: 2,
                cache_write_tokens: 1,
                reasoning_tokens: 3,
            },
            cost_micros: 100,
            node_id: "dp-1".into(),
            received_at_ms: 5000,
            attempts: Vec::new(),
            ttft_ms: -1,
            api: String::new(),
            guardrail_verdicts: Vec::new(),
            lease_id: String::new(),
            key_lease_id: String::new(),
            cache_hit: None,
        }
    }

    #[tokio::test]
    async fn ingest_is_idempotent_and_aggregates() {
        for t in crate::store::test_backends::test_stores().await {
            let store = t.store.clone();
            let batch = vec![
                rec("u1", "gpt", "ck_1", 1000, 200),
                rec("u2", "gpt", "ck_2", 2000, 429),
                rec("u3", "claude", "ck_1", 3_600_000, 200),
            ];
            assert_eq!(store.insert_usage_records(&batch).await.unwrap(), 0);
            assert_eq!(store.insert_usage_records(&batch).await.unwrap(), 3);

            let all = UsageFilter {
                since_ms: 0,
                until_ms: i64::MAX,
                by_key: false,
            };
            let rows = store.usage_summary("tn_a", all).await.unwrap();
            assert_eq!(rows.len(), 2);
            assert_eq!(rows[1].model, "gpt");
            assert_eq!(rows[1].calls, 2);
            assert_eq!(rows[1].errors, 1);
            assert_eq!(rows[1].prompt_tokens, 20);
            assert_eq!(rows[1].completion_tokens, 10);
            assert_eq!(rows[1].cost_micros, 200);

            // Hour resolution: [1000, 3000) widens to the first hour, which
            // holds u1 and u2; u3 in the next hour is outside.
            let window = UsageFilter {
                since_ms: 1000,
                until_ms: 3000,
                by_key: true,
            };
            let rows = store.usage_summary("tn_a", window).await.unwrap();
            let keys: Vec<_> = rows
                .iter()
                .map(|r| (r.model.as_str(), r.key_id.as_str(), r.calls))
                .collect();
            assert_eq!(keys, [("gpt", "ck_1", 1), ("gpt", "ck_2", 1)]);
            assert!(store.usage_summary("tn_b", all).await.unwrap().is_empty());

            let listed = store.list_usage_records("tn_a", 2).await.unwrap();
            assert_eq!(listed.len(), 2);
            assert_eq!(listed[0], batch[2]);
            assert_eq!(listed[1].id, "u2");
        }
    }
}
