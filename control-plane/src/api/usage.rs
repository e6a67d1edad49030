//! `UsageService`: aggregates and itemised records from ingested usage.

use tollgate_core::time::now_ms;
use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::usage_service_server::UsageService;
use tonic::{Request, Response, Status};

use super::access::Need;
use super::status::store_status;
use super::ApiState;
use crate::store::{UsageFilter, UsageRecord};

pub const DEFAULT_RECORD_LIMIT: u32 = 100;
pub const MAX_RECORD_LIMIT: u32 = 1000;

#[derive(Debug, Clone)]
pub struct UsageApi {
    state: ApiState,
}

impl UsageApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

fn record_to_proto(r: UsageRecord) -> pb::UsageRecordView {
    pb::UsageRecordView {
        id: r.id,
        request_id: r.request_id,
        tenant_id: r.tenant_id,
        key_id: r.key_id,
        model: r.model,
        provider_id: r.provider_id,
        started_at_ms: r.started_at_ms,
        latency_ms: r.latency_ms,
        status_code: r.status_code,
        error_code: r.error_code,
        stream: r.stream,
        prompt_tokens: r.usage.prompt_tokens,
        completion_tokens: r.usage.completion_tokens,
        cost_micros: r.cost_micros,
        node_id: r.node_id,
        cache_hit: r.cache_hit.is_some(),
        cache_hit_cost_bps: r.cache_hit.unwrap_or(0),
        attempts: r
            .attempts
            .into_iter()
            .map(|a| pb::UsageAttemptView {
                provider_id: a.provider_id,
                upstream_model: a.upstream_model,
                status_code: a.status_code,
                latency_ms: a.latency_ms,
                error_code: a.error_code,
            })
            .collect(),
        guardrail_verdicts: r
            .guardrail_verdicts
            .into_iter()
            .map(|v| pb::GuardrailVerdictView {
                name: v.name,
                action: v.action,
                category: v.category,
                direction: v.direction,
            })
            .collect(),
    }
}

/// `[since, until)` with 0 meaning "from the beginning" / "until now".
fn window(since_ms: i64, until_ms: i64) -> Result<(i64, i64), Status> {
    if since_ms < 0 || until_ms < 0 {
        return Err(Status::invalid_argument(
            "since_ms and until_ms must not be negative",
        ));
    }
    // "Until now" includes calls that started this millisecond.
    let until = if until_ms == 0 {
        now_ms() + 1
    } else {
        until_ms
    };
    if since_ms > until {
        return Err(Status::invalid_argument("since_ms is after until_ms"));
    }
    Ok((since_ms, until))
}

fn effective_limit(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_RECORD_LIMIT,
        n => n.min(MAX_RECORD_LIMIT),
    }
}

#[tonic::async_trait]
impl UsageService for UsageApi {
    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> Result<Response<pb::GetUsageResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let req = request.into_inner();
        let (since_ms, until_ms) = window(req.since_ms, req.until_ms)?;
        let rows = self
            .state
            .store
            .usage_summary(
                &tenant.id,
                UsageFilter {
                    since_ms,
                    until_ms,
                    by_key: req.by_key,
                },
            )
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::GetUsageResponse {
            rows: rows
                .into_iter()
                .map(|r| pb::UsageRow {
                    model: r.model,
                    key_id: r.key_id,
                    calls: r.calls,
                    errors: r.errors,
                    prompt_tokens: r.prompt_tokens,
                    completion_tokens: r.completion_tokens,
                    total_tokens: r.prompt_tokens.saturating_add(r.completion_tokens),
                    cost_micros: r.cost_micros,
                })
                .collect(),
        }))
    }

    async fn list_usage_records(
        &self,
        request: Request<pb::ListUsageRecordsRequest>,
    ) -> Result<Response<pb::ListUsageRecordsResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let req = request.into_inner();
        let records = self
            .state
            .store
            .list_usage_records(&tenant.id, i64::from(effective_limit(req.limit)))
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListUsageRecordsResponse {
            records: records.into_iter().map(record_to_proto).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_windows() {
        assert_eq!(effective_limit(0), 100);
        assert_eq!(effective_limit(7), 7);
        assert_eq!(effective_limit(5000), 1000);
        assert_eq!(window(10, 20).ok(), Some((10, 20)));
        assert!(window(30, 20).is_err());
        assert!(window(-1, 0).is_err());
        assert!(window(0, 0).is_ok_and(|(_, u)| u >= now_ms()));
    }
}
