//! `RouteService`: the targets and policy of a model's route.

use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::route_service_server::RouteService;
use tonic::{Request, Response, Status};

use super::access::Need;
use super::status::store_status;
use super::ApiState;
use crate::store::{NewRouteTarget, RouteView, StoredRoutePolicy};

const STRATEGIES: [&str; 4] = ["weighted", "least_in_flight", "latency", "ordered"];

#[derive(Debug, Clone)]
pub struct RouteApi {
    state: ApiState,
}

impl RouteApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

fn policy_to_proto(p: StoredRoutePolicy) -> pb::RoutePolicy {
    pb::RoutePolicy {
        strategy: p.strategy,
        max_attempts: p.max_attempts,
        retries_per_target: p.retries_per_target,
        no_same_target_retry: p.no_same_target_retry,
        connect_timeout_ms: p.connect_timeout_ms,
        total_timeout_ms: p.total_timeout_ms,
        ttft_timeout_ms: p.ttft_timeout_ms,
        idle_timeout_ms: p.idle_timeout_ms,
        retry_base_ms: p.retry_base_ms,
        retry_max_ms: p.retry_max_ms,
        breaker_failures: p.breaker_failures,
        breaker_cooldown_ms: p.breaker_cooldown_ms,
        fallback_model: p.fallback_model,
    }
}

fn policy_from_proto(p: pb::RoutePolicy) -> Result<StoredRoutePolicy, Status> {
    let strategy = p.strategy.trim().to_owned();
    if !strategy.is_empty() && !STRATEGIES.contains(&strategy.as_str()) {
        return Err(Status::invalid_argument(format!(
            "unknown strategy '{strategy}' (expected one of {})",
            STRATEGIES.join(", ")
        )));
    }
    if p.max_attempts > 20 {
        return Err(Status::invalid_argument("max_attempts is at most 20"));
    }
    Ok(StoredRoutePolicy {
        strategy,
        max_attempts: p.max_attempts,
        retries_per_target: p.retries_per_target,
        no_same_target_retry: p.no_same_target_retry,
        connect_timeout_ms: p.connect_timeout_ms,
        total_timeout_ms: p.total_timeout_ms,
        ttft_timeout_ms: p.ttft_timeout_ms,
        idle_timeout_ms: p.idle_timeout_ms,
        retry_base_ms: p.retry_base_ms,
        retry_max_ms: p.retry_max_ms,
        breaker_failures: p.breaker_failures,
        breaker_cooldown_ms: p.breaker_cooldown_ms,
        fallback_model: p.fallback_model.trim().to_owned(),
    })
}

fn route_to_proto(r: RouteView) -> pb::Route {
    pb::Route {
        model_id: r.model.id,
        tenant_id: r.model.tenant_id,
        name: r.model.name,
        targets: r
            .targets
            .into_iter()
            .map(|t| pb::RouteTarget {
                id: t.id,
                provider_id: t.provider_id,
                provider_name: t.provider_name,
                upstream_model: t.upstream_model,
                priority: u32::try_from(t.priority).unwrap_or(u32::MAX),
                weight: u32::try_from(t.weight).unwrap_or(1),
                provider_disabled: t.provider_disabled,
            })
            .collect(),
        policy: Some(policy_to_proto(r.policy)),
    }
}

fn required<'a>(what: &str, v: &'a str) -> Result<&'a str, Status> {
    let v = v.trim();
    if v.is_empty() {
        return Err(Status::invalid_argument(format!("{what} is required")));
    }
    Ok(v)
}

#[tonic::async_trait]
impl RouteService for RouteApi {
    async fn get_route(
        &self,
        request: Request<pb::GetRouteRequest>,
    ) -> Result<Response<pb::Route>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let req = request.into_inner();
        let model = required("model", &req.model)?;
        let r = self
            .state
            .store
            .get_route(&tenant.id, model)
            .await
            .map_err(store_status)?;
        Ok(Response::new(route_to_proto(r)))
    }

    async fn add_route_target(
        &self,
        request: Request<pb::AddRouteTargetRequest>,
    ) -> Result<Response<pb::Route>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let model = required("model", &req.model)?.to_owned();
        let provider = required("provider", &req.provider)?.to_owned();
        let r = self
            .state
            .store
            .add_route_target(NewRouteTarget {
                tenant_id: tenant.id.clone(),
                model,
                provider,
                upstream_model: req.upstream_model.trim().to_owned(),
                priority: i64::from(req.priority),
                weight: i64::from(req.weight.max(1)),
            })
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %tenant.id, model_id = %r.model.id, targets = r.targets.len(), "route target added");
        Ok(Response::new(route_to_proto(r)))
    }

    async fn remove_route_target(
        &self,
        request: Request<pb::RemoveRouteTargetRequest>,
    ) -> Result<Response<pb::Route>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let model = required("model", &req.model)?;
        let provider = required("provider", &req.provider)?;
        let upstream = Some(req.upstream_model.trim()).filter(|u| !u.is_empty());
        let r = self
            .state
            .store
            .remove_route_target(&tenant.id, model, provider, upstream)
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %tenant.id, model_id = %r.model.id, targets = r.targets.len(), "route target removed");
        Ok(Response::new(route_to_proto(r)))
    }

    async fn set_route_policy(
        &self,
        request: Request<pb::SetRoutePolicyRequest>,
    ) -> Result<Response<pb::Route>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let model = required("model", &req.model)?;
        let policy = policy_from_proto(req.policy.unwrap_or_default())?;
        let r = self
            .state
            .store
            .set_route_policy(&tenant.id, model, &policy)
            .await
            .map_err(store_status)?;
        Ok(Response::new(route_to_proto(r)))
    }
}
