//! `UsageQueryService`: aggregates from the hourly rollups and the request
//! log, both tenant-scoped and paged with opaque cursors.

use base64::Engine as _;
use tollgate_core::time::now_ms;
use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::usage_query_service_server::UsageQueryService;
use tonic::{Request, Response, Status};

use super::access::Need;
use super::status::store_status;
use super::ApiState;
use crate::store::{
    hour_floor, Dimensions, RequestCursor, RequestFilter, RollupCursor, RollupQuery, RollupRow,
    TimeBucket, UsageRecord, HOUR_MS,
};

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Real time zones are within UTC-12..UTC+14.
const MAX_TZ_OFFSET_MINUTES: i32 = 14 * 60;

#[derive(Debug, Clone)]
pub struct UsageQueryApi {
    state: ApiState,
}

impl UsageQueryApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

fn page_size(n: u32) -> u32 {
    match n {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

fn filter(s: String) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn encode_token<T: serde::Serialize>(cursor: &T) -> String {
    serde_json::to_vec(cursor)
        .map(|json| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
        .unwrap_or_default()
}

fn decode_token<T: serde::de::DeserializeOwned>(token: &str) -> Result<Option<T>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .map(Some)
        .ok_or_else(|| {
            Status::invalid_argument(
                "page_token is not valid: pass next_page_token of the previous response unchanged",
            )
        })
}

fn non_negative(since_ms: i64, until_ms: i64) -> Result<(), Status> {
    if since_ms < 0 || until_ms < 0 {
        return Err(Status::invalid_argument(
            "since_ms and until_ms must not be negative",
        ));
    }
    Ok(())
}

/// `[since, until)` widened to whole hours; 0 means the beginning / now.
pub fn hour_window(since_ms: i64, until_ms: i64) -> Result<(i64, i64), Status> {
    non_negative(since_ms, until_ms)?;
    let until = if until_ms == 0 { now_ms() } else { until_ms };
    if since_ms > until {
        return Err(Status::invalid_argument("since_ms is after until_ms"));
    }
    let since = hour_floor(since_ms);
    // Round up: a window ending mid-hour includes that hour.
    let until = hour_floor(until.saturating_add(HOUR_MS - 1));
    Ok((since, until))
}

pub fn dimensions(group_by: &[i32], tz_offset_minutes: i32) -> Result<Dimensions, Status> {
    let mut d = Dimensions::default();
    if tz_offset_minutes % 60 != 0 || tz_offset_minutes.abs() > MAX_TZ_OFFSET_MINUTES {
        return Err(Status::invalid_argument(
            "tz_offset_minutes must be whole hours between -840 and 840 (usage is rolled up hourly)",
        ));
    }
    let day = TimeBucket::Day {
        offset_hours: tz_offset_minutes / 60,
    };
    for g in group_by {
        let time = match pb::UsageDimension::try_from(*g) {
            Ok(pb::UsageDimension::Hour) => TimeBucket::Hour,
            Ok(pb::UsageDimension::Day) => day,
            Ok(pb::UsageDimension::Model) => {
                d.model = true;
                continue;
            }
            Ok(pb::UsageDimension::Key) => {
                d.key = true;
                continue;
            }
            Ok(pb::UsageDimension::Provider) => {
                d.provider = true;
                continue;
            }
            Ok(pb::UsageDimension::Unspecified) | Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "group_by: unknown dimension {g} (use hour, day, model, key or provider)"
                )))
            }
        };
        if d.time != TimeBucket::None && d.time != time {
            return Err(Status::invalid_argument(
                "group_by: choose hour or day, not both",
            ));
        }
        d.time = time;
    }
    Ok(d)
}

fn bucket_to_proto(r: RollupRow) -> pb::UsageBucket {
    let t = r.totals;
    pb::UsageBucket {
        bucket_start_ms: r.bucket_start_ms,
        model: r.model,
        key_id: r.key_id,
        provider_id: r.provider_id,
        calls: t.calls,
        errors: t.errors,
        prompt_tokens: t.prompt_tokens,
        completion_tokens: t.completion_tokens,
        cache_read_tokens: t.cache_read_tokens,
        cache_write_tokens: t.cache_write_tokens,
        reasoning_tokens: t.reasoning_tokens,
        cost_micros: t.cost_micros,
        latency_ms_sum: t.latency_ms_sum,
        ttft_ms_sum: t.ttft_ms_sum,
        ttft_count: t.ttft_count,
    }
}

fn entry_to_proto(r: UsageRecord) -> pb::RequestLogEntry {
    pb::RequestLogEntry {
        id: r.id,
        request_id: r.request_id,
        key_id: r.key_id,
        model: r.model,
        provider_id: r.provider_id,
        upstream_model: r.upstream_model,
        started_at_ms: r.started_at_ms,
        latency_ms: r.latency_ms,
        ttft_ms: r.ttft_ms,
        status_code: r.status_code,
        error_code: r.error_code,
        stream: r.stream,
        api: r.api,
        prompt_tokens: r.usage.prompt_tokens,
        completion_tokens: r.usage.completion_tokens,
        cache_read_tokens: r.usage.cache_read_tokens,
        cache_write_tokens: r.usage.cache_write_tokens,
        reasoning_tokens: r.usage.reasoning_tokens,
        cost_micros: r.cost_micros,
        node_id: r.node_id,
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
    }
}

impl UsageQueryApi {
    /// A caller-key filter given by id or by name, as an id. Names are
    /// looked up in the tenant only: another tenant's key is "not found".
    async fn key_filter(
        &self,
        tenant_id: &str,
        v: Option<String>,
    ) -> Result<Option<String>, Status> {
        let Some(v) = v else { return Ok(None) };
        if tollgate_core::ids::has_prefix(&v, tollgate_core::ids::prefix::CALLER_KEY) {
            return Ok(Some(v));
        }
        let keys = self
            .state
            .store
            .list_keys(tenant_id)
            .await
            .map_err(store_status)?;
        keys.into_iter()
            .find(|k| k.name == v)
            .map(|k| Some(k.id))
            .ok_or_else(|| Status::not_found(format!("caller key {v} not found")))
    }

    /// A provider filter given by id or by name, as an id.
    async fn provider_filter(
        &self,
        tenant_id: &str,
        v: Option<String>,
    ) -> Result<Option<String>, Status> {
        let Some(v) = v else { return Ok(None) };
        if tollgate_core::ids::has_prefix(&v, tollgate_core::ids::prefix::PROVIDER) {
            return Ok(Some(v));
        }
        let providers = self
            .state
            .store
            .list_providers(tenant_id)
            .await
            .map_err(store_status)?;
        providers
            .into_iter()
            .find(|p| p.name == v)
            .map(|p| Some(p.id))
            .ok_or_else(|| Status::not_found(format!("provider {v} not found")))
    }
}

#[tonic::async_trait]
impl UsageQueryService for UsageQueryApi {
    async fn query_usage(
        &self,
        request: Request<pb::QueryUsageRequest>,
    ) -> Result<Response<pb::QueryUsageResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let req = request.into_inner();
        let (since_ms, until_ms) = hour_window(req.since_ms, req.until_ms)?;
        let query = RollupQuery {
            since_ms,
            until_ms,
            group: dimensions(&req.group_by, req.tz_offset_minutes)?,
            model: filter(req.model),
            key_id: self.key_filter(&tenant.id, filter(req.key_id)).await?,
            provider_id: self
                .provider_filter(&tenant.id, filter(req.provider_id))
                .await?,
        };
        let after: Option<RollupCursor> = decode_token(&req.page_token)?;
        let size = page_size(req.page_size);
        // One more than asked says whether another page follows.
        let mut rows = self
            .state
            .store
            .query_usage_rollups(&tenant.id, &query, after.as_ref(), i64::from(size) + 1)
            .await
            .map_err(store_status)?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => encode_token(&last.cursor()),
            _ => String::new(),
        };
        Ok(Response::new(pb::QueryUsageResponse {
            buckets: rows.into_iter().map(bucket_to_proto).collect(),
            next_page_token,
            since_ms,
            until_ms,
        }))
    }

    async fn search_requests(
        &self,
        request: Request<pb::SearchRequestsRequest>,
    ) -> Result<Response<pb::SearchRequestsResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let req = request.into_inner();
        non_negative(req.since_ms, req.until_ms)?;
        // "Until now" includes calls that started this millisecond.
        let until_ms = if req.until_ms == 0 {
            now_ms() + 1
        } else {
            req.until_ms
        };
        let filter = RequestFilter {
            since_ms: req.since_ms,
            until_ms,
            model: filter(req.model),
            key_id: self.key_filter(&tenant.id, filter(req.key_id)).await?,
            provider_id: self
                .provider_filter(&tenant.id, filter(req.provider_id))
                .await?,
            status_code: (req.status_code != 0).then_some(req.status_code),
            errors_only: req.errors_only,
            error_code: filter(req.error_code),
        };
        let after: Option<RequestCursor> = decode_token(&req.page_token)?;
        let size = page_size(req.page_size);
        let mut records = self
            .state
            .store
            .search_usage_records(&tenant.id, &filter, after.as_ref(), i64::from(size) + 1)
            .await
            .map_err(store_status)?;
        let more = records.len() > size as usize;
        records.truncate(size as usize);
        let next_page_token = match records.last() {
            Some(last) if more => encode_token(&RequestCursor {
                started_at_ms: last.started_at_ms,
                id: last.id.clone(),
            }),
            _ => String::new(),
        };
        Ok(Response::new(pb::SearchRequestsResponse {
            requests: records.into_iter().map(entry_to_proto).collect(),
            next_page_token,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn windows_widen_to_whole_hours() {
        assert_eq!(hour_window(0, HOUR_MS).unwrap(), (0, HOUR_MS));
        assert_eq!(
            hour_window(HOUR_MS + 5, 2 * HOUR_MS + 1).unwrap(),
            (HOUR_MS, 3 * HOUR_MS)
        );
        assert!(hour_window(5, 4).is_err());
        assert!(hour_window(-1, 0).is_err());
        let (_, until) = hour_window(0, 0).unwrap();
        assert!(until >= now_ms() && until % HOUR_MS == 0);
    }

    #[test]
    fn dimensions_parse_and_reject() {
        let d = dimensions(
            &[
                pb::UsageDimension::Day as i32,
                pb::UsageDimension::Model as i32,
            ],
            120,
        )
        .unwrap();
        assert_eq!(d.time, TimeBucket::Day { offset_hours: 2 });
        assert!(d.model && !d.key && !d.provider);
        let both = [
            pb::UsageDimension::Day as i32,
            pb::UsageDimension::Hour as i32,
        ];
        assert!(dimensions(&both, 0).is_err());
        assert!(dimensions(&[0], 0).is_err());
        assert!(dimensions(&[99], 0).is_err());
        assert!(dimensions(&[], 30).is_err());
        assert!(dimensions(&[], 15 * 60).is_err());
        assert_eq!(dimensions(&[], 0).unwrap(), Dimensions::default());
    }

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let c = RequestCursor {
            started_at_ms: 42,
            id: "ur_x".into(),
        };
        let t = encode_token(&c);
        assert_eq!(decode_token::<RequestCursor>(&t).unwrap(), Some(c));
        assert_eq!(decode_token::<RequestCursor>("").unwrap(), None);
        assert!(decode_token::<RequestCursor>("not a token!").is_err());
        assert!(decode_token::<RollupCursor>(&t).is_err());
        assert_eq!(page_size(0), 100);
        assert_eq!(page_size(5000), 1000);
    }
}
