//! `RateLimitService`: rate limits of a tenant, its models and its keys,
//! and the operator's named tiers (docs/rate-limits.md).

use std::collections::HashMap;

use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::rate_limit_service_server::RateLimitService;
use tonic::{Request, Response, Status};

use super::access::Need;
use super::status::store_status;
use super::ApiState;
use crate::store::{LimitScope, RateLimitRow, RateLimitTierRow, RateLimitValues};

#[derive(Debug, Clone)]
pub struct RateLimitApi {
    state: ApiState,
}

impl RateLimitApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

/// The scope and its target reference, validated.
fn scope_of(scope: Option<&pb::RateLimitScope>) -> Result<(LimitScope, String), Status> {
    let scope = scope.ok_or_else(|| {
        Status::invalid_argument("scope is required (kind \"tenant\", \"model\" or \"key\")")
    })?;
    let kind = LimitScope::parse(scope.kind.trim()).ok_or_else(|| {
        Status::invalid_argument(format!(
            "scope.kind must be \"tenant\", \"model\" or \"key\", not {:?}",
            scope.kind
        ))
    })?;
    let target = scope.target.trim().to_string();
    match (kind, target.is_empty()) {
        (LimitScope::Tenant, false) => Err(Status::invalid_argument(
            "scope.target must be empty for the tenant scope",
        )),
        (LimitScope::Model, true) => Err(Status::invalid_argument(
            "scope.target is required: the model (id or name)",
        )),
        (LimitScope::Key, true) => Err(Status::invalid_argument(
            "scope.target is required: the key (id or name)",
        )),
        _ => Ok((kind, target)),
    }
}

/// Largest value of any limit (keeps every sum on the data plane in i64).
const MAX_VALUE: u64 = 1 << 50;

/// Longest concurrency queue wait: a short queue, not a scheduler.
const MAX_QUEUE_MS: u64 = 60_000;

/// Most calls waiting per limiter and data plane.
const MAX_QUEUE_DEPTH: u64 = 10_000;

fn values_of(v: Option<&pb::RateLimitValues>) -> Result<RateLimitValues, Status> {
    let v = v.cloned().unwrap_or_default();
    let values = RateLimitValues {
        requests_per_second: v.requests_per_second,
        requests_per_minute: v.requests_per_minute,
        requests_per_day: v.requests_per_day,
        tokens_per_minute: v.tokens_per_minute,
        tokens_per_day: v.tokens_per_day,
        max_concurrent: v.max_concurrent,
        queue_ms: v.queue_ms,
        queue_depth: v.queue_depth,
    };
    if values.queue_ms > MAX_QUEUE_MS {
        return Err(Status::invalid_argument(format!(
            "queue_ms must be at most {MAX_QUEUE_MS} (a short queue; callers retry after a 429)"
        )));
    }
    if values.queue_depth > MAX_QUEUE_DEPTH {
        return Err(Status::invalid_argument(format!(
            "queue_depth must be at most {MAX_QUEUE_DEPTH}"
        )));
    }
    let all = [
        values.requests_per_second,
        values.requests_per_minute,
        values.requests_per_day,
        values.tokens_per_minute,
        values.tokens_per_day,
        values.max_concurrent,
    ];
    if all.iter().any(|n| *n > MAX_VALUE) {
        return Err(Status::invalid_argument(format!(
            "limits must be at most {MAX_VALUE}"
        )));
    }
    Ok(values)
}

fn values_pb(v: &RateLimitValues) -> pb::RateLimitValues {
    pb::RateLimitValues {
        requests_per_second: v.requests_per_second,
        requests_per_minute: v.requests_per_minute,
        requests_per_day: v.requests_per_day,
        tokens_per_minute: v.tokens_per_minute,
        tokens_per_day: v.tokens_per_day,
        max_concurrent: v.max_concurrent,
        queue_ms: v.queue_ms,
        queue_depth: v.queue_depth,
    }
}

fn tier_pb(t: &RateLimitTierRow) -> pb::RateLimitTier {
    pb::RateLimitTier {
        name: t.name.clone(),
        limits: Some(values_pb(&t.limits)),
        updated_at_ms: t.updated_at_ms,
    }
}

fn entry(
    r: RateLimitRow,
    target_name: String,
    tiers: &HashMap<String, RateLimitValues>,
) -> pb::RateLimitEntry {
    let effective = tiers.get(&r.tier).map_or(r.limits, |t| r.limits.over(t));
    pb::RateLimitEntry {
        tenant_id: r.tenant_id,
        scope: r.scope.as_str().to_string(),
        target_id: r.target_id,
        target_name,
        limits: Some(values_pb(&r.limits)),
        tier: r.tier,
        effective: Some(values_pb(&effective)),
        updated_at_ms: r.updated_at_ms,
    }
}

impl RateLimitApi {
    /// Names of the tenant's models and keys by id (for listings).
    async fn names(&self, tenant_id: &str) -> Result<HashMap<String, String>, Status> {
        let store = &self.state.store;
        let mut names: HashMap<String, String> = store
            .list_models(tenant_id)
            .await
            .map_err(store_status)?
            .into_iter()
            .map(|m| (m.id, m.name))
            .collect();
        names.extend(
            store
                .list_keys(tenant_id)
                .await
                .map_err(store_status)?
                .into_iter()
                .map(|k| (k.id, k.name)),
        );
        Ok(names)
    }

    async fn tiers(&self) -> Result<HashMap<String, RateLimitValues>, Status> {
        Ok(self
            .state
            .store
            .list_rate_limit_tiers()
            .await
            .map_err(store_status)?
            .into_iter()
            .map(|t| (t.name, t.limits))
            .collect())
    }
}

#[tonic::async_trait]
impl RateLimitService for RateLimitApi {
    async fn set_rate_limit(
        &self,
        request: Request<pb::SetRateLimitRequest>,
    ) -> Result<Response<pb::RateLimitEntry>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let (scope, target) = scope_of(req.scope.as_ref())?;
        let limits = values_of(req.limits.as_ref())?;
        let tier = req.tier.trim();
        let row = self
            .state
            .store
            .set_rate_limit(
                &tenant.id,
                scope,
                &target,
                limits,
                tier,
                tollgate_core::time::now_ms(),
            )
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %tenant.id, scope = scope.as_str(), target_id = %row.target_id, tier = %row.tier, "rate limits set");
        let name = self
            .names(&tenant.id)
            .await?
            .remove(&row.target_id)
            .unwrap_or_default();
        let tiers = self.tiers().await?;
        Ok(Response::new(entry(row, name, &tiers)))
    }

    async fn list_rate_limits(
        &self,
        request: Request<pb::ListRateLimitsRequest>,
    ) -> Result<Response<pb::ListRateLimitsResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let rows = self
            .state
            .store
            .list_rate_limits(&tenant.id)
            .await
            .map_err(store_status)?;
        let names = self.names(&tenant.id).await?;
        let tiers = self.tiers().await?;
        let limits = rows
            .into_iter()
            .filter_map(|r| {
                // Limits of a deleted model or revoked key apply to nothing.
                let name = names.get(&r.target_id).cloned();
                match (r.scope, name) {
                    (LimitScope::Tenant, _) => Some(entry(r, String::new(), &tiers)),
                    (_, Some(name)) => Some(entry(r, name, &tiers)),
                    (_, None) => None,
                }
            })
            .collect();
        Ok(Response::new(pb::ListRateLimitsResponse { limits }))
    }

    async fn clear_rate_limit(
        &self,
        request: Request<pb::ClearRateLimitRequest>,
    ) -> Result<Response<pb::ClearRateLimitResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let (scope, target) = scope_of(req.scope.as_ref())?;
        let removed = self
            .state
            .store
            .clear_rate_limit(&tenant.id, scope, &target)
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %tenant.id, scope = scope.as_str(), target = %target, removed, "rate limits cleared");
        Ok(Response::new(pb::ClearRateLimitResponse { removed }))
    }

    async fn set_rate_limit_tier(
        &self,
        request: Request<pb::SetRateLimitTierRequest>,
    ) -> Result<Response<pb::RateLimitTier>, Status> {
        self.state.require_operator(&request, Need::Write).await?;
        let req = request.into_inner();
        let name = req.name.trim();
        super::require_token("name", name)?;
        let limits = values_of(req.limits.as_ref())?;
        let tier = self
            .state
            .store
            .set_rate_limit_tier(name, limits, tollgate_core::time::now_ms())
            .await
            .map_err(store_status)?;
        tracing::info!(tier = %tier.name, "rate limit tier set");
        Ok(Response::new(tier_pb(&tier)))
    }

    async fn list_rate_limit_tiers(
        &self,
        request: Request<pb::ListRateLimitTiersRequest>,
    ) -> Result<Response<pb::ListRateLimitTiersResponse>, Status> {
        // Tiers are the operator's plans, not tenant data: any signed-in
        // principal may read them.
        self.state.principal(&request).await?;
        let tiers = self
            .state
            .store
            .list_rate_limit_tiers()
            .await
            .map_err(store_status)?
            .iter()
            .map(tier_pb)
            .collect();
        Ok(Response::new(pb::ListRateLimitTiersResponse { tiers }))
    }

    async fn delete_rate_limit_tier(
        &self,
        request: Request<pb::DeleteRateLimitTierRequest>,
    ) -> Result<Response<pb::DeleteRateLimitTierResponse>, Status> {
        self.state.require_operator(&request, Need::Write).await?;
        let name = request.get_ref().name.trim().to_string();
        let removed = self
            .state
            .store
            .delete_rate_limit_tier(&name)
            .await
            .map_err(store_status)?;
        tracing::info!(tier = %name, removed, "rate limit tier deleted");
        Ok(Response::new(pb::DeleteRateLimitTierResponse { removed }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_values_are_validated() {
        let s = |kind: &str, target: &str| pb::RateLimitScope {
            kind: kind.into(),
            target: target.into(),
        };
        assert!(scope_of(None).is_err());
        assert!(scope_of(Some(&s("tenant", ""))).is_ok());
        assert!(scope_of(Some(&s("tenant", "x"))).is_err());
        assert!(scope_of(Some(&s("model", ""))).is_err());
        assert_eq!(
            scope_of(Some(&s("key", " backend "))).unwrap(),
            (LimitScope::Key, "backend".to_string())
        );
        let huge = pb::RateLimitValues {
            tokens_per_day: u64::MAX,
            ..Default::default()
        };
        assert!(values_of(Some(&huge)).is_err());
        assert_eq!(values_of(None).unwrap(), RateLimitValues::default());
        let queue = |queue_ms: u64, queue_depth: u64| pb::RateLimitValues {
            max_concurrent: 1,
            queue_ms,
            queue_depth,
            ..Default::default()
        };
        assert_eq!(values_of(Some(&queue(2_000, 3))).unwrap().queue_ms, 2_000);
        assert!(values_of(Some(&queue(60_001, 3))).is_err());
        assert!(values_of(Some(&queue(2_000, 10_001))).is_err());
    }
}
