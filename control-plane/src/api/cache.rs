//! `CachePolicyService`: response cache policies of a tenant, its models
//! and its keys (docs/cache.md).

use crate::api::access::Need;
use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::cache_policy_service_server::CachePolicyService;
use tonic::{Request, Response, Status};

use super::status::store_status;
use super::ApiState;
use crate::store::{CachePolicyRow, CacheScope, CacheSettings};

/// Longest TTL a policy may ask for (30 days).
const MAX_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, Clone)]
pub struct CachePolicyApi {
    state: ApiState,
}

impl CachePolicyApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

/// The scope and its target reference, validated.
fn scope_of(scope: Option<&pb::CacheScope>) -> Result<(CacheScope, String), Status> {
    let scope = scope.ok_or_else(|| {
        Status::invalid_argument("scope is required (kind \"tenant\", \"model\" or \"key\")")
    })?;
    let kind = CacheScope::parse(scope.kind.trim()).ok_or_else(|| {
        Status::invalid_argument(format!(
            "scope.kind must be \"tenant\", \"model\" or \"key\", not {:?}",
            scope.kind
        ))
    })?;
    let target = scope.target.trim().to_string();
    match (kind, target.is_empty()) {
        (CacheScope::Tenant, false) => Err(Status::invalid_argument(
            "scope.target must be empty for the tenant scope",
        )),
        (CacheScope::Model, true) => Err(Status::invalid_argument(
            "scope.target is required: the model (id or name)",
        )),
        (CacheScope::Key, true) => Err(Status::invalid_argument(
            "scope.target is required: the key (id or name)",
        )),
        _ => Ok((kind, target)),
    }
}

fn settings_of(s: Option<&pb::CacheSettings>) -> Result<CacheSettings, Status> {
    let s = s.ok_or_else(|| Status::invalid_argument("settings are required"))?;
    if s.hit_cost_bps > 10_000 {
        return Err(Status::invalid_argument(
            "settings.hit_cost_bps must be between 0 (free) and 10000 (full price)",
        ));
    }
    if s.ttl_ms > MAX_TTL_MS {
        return Err(Status::invalid_argument(format!(
            "settings.ttl_ms must be at most {MAX_TTL_MS} (30 days)"
        )));
    }
    Ok(CacheSettings {
        enabled: s.enabled,
        ttl_ms: s.ttl_ms,
        max_entry_bytes: s.max_entry_bytes,
        only_deterministic: s.only_deterministic,
        hit_cost_bps: s.hit_cost_bps,
    })
}

fn entry(p: CachePolicyRow, target_name: String) -> pb::CachePolicyEntry {
    pb::CachePolicyEntry {
        tenant_id: p.tenant_id,
        scope: p.scope.as_str().to_string(),
        target_id: p.target_id,
        target_name,
        settings: Some(pb::CacheSettings {
            enabled: p.settings.enabled,
            ttl_ms: p.settings.ttl_ms,
            max_entry_bytes: p.settings.max_entry_bytes,
            only_deterministic: p.settings.only_deterministic,
            hit_cost_bps: p.settings.hit_cost_bps,
        }),
        updated_at_ms: p.updated_at_ms,
    }
}

impl CachePolicyApi {
    /// Names of the tenant's models and keys by id (for listings).
    async fn names(
        &self,
        tenant_id: &str,
    ) -> Result<std::collections::HashMap<String, String>, Status> {
        let store = &self.state.store;
        let mut names: std::collections::HashMap<String, String> = store
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
}

#[tonic::async_trait]
impl CachePolicyService for CachePolicyApi {
    async fn set_cache_policy(
        &self,
        request: Request<pb::SetCachePolicyRequest>,
    ) -> Result<Response<pb::CachePolicyEntry>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let (scope, target) = scope_of(req.scope.as_ref())?;
        let settings = settings_of(req.settings.as_ref())?;
        let row = self
            .state
            .store
            .set_cache_policy(
                &tenant.id,
                scope,
                &target,
                settings,
                tollgate_core::time::now_ms(),
            )
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %tenant.id, scope = scope.as_str(), target_id = %row.target_id, enabled = settings.enabled, "cache policy set");
        let name = self
            .names(&tenant.id)
            .await?
            .remove(&row.target_id)
            .unwrap_or_default();
        Ok(Response::new(entry(row, name)))
    }

    async fn list_cache_policies(
        &self,
        request: Request<pb::ListCachePoliciesRequest>,
    ) -> Result<Response<pb::ListCachePoliciesResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let rows = self
            .state
            .store
            .list_cache_policies(&tenant.id)
            .await
            .map_err(store_status)?;
        let names = self.names(&tenant.id).await?;
        let policies = rows
            .into_iter()
            .filter_map(|p| {
                // A policy of a deleted model or revoked key applies to
                // nothing: not listed.
                let name = names.get(&p.target_id).cloned();
                match (p.scope, name) {
                    (CacheScope::Tenant, _) => Some(entry(p, String::new())),
                    (_, Some(name)) => Some(entry(p, name)),
                    (_, None) => None,
                }
            })
            .collect();
        Ok(Response::new(pb::ListCachePoliciesResponse { policies }))
    }

    async fn clear_cache_policy(
        &self,
        request: Request<pb::ClearCachePolicyRequest>,
    ) -> Result<Response<pb::ClearCachePolicyResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let (scope, target) = scope_of(req.scope.as_ref())?;
        let removed = self
            .state
            .store
            .clear_cache_policy(&tenant.id, scope, &target)
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %tenant.id, scope = scope.as_str(), target = %target, removed, "cache policy cleared");
        Ok(Response::new(pb::ClearCachePolicyResponse { removed }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_settings_are_validated() {
        let s = |kind: &str, target: &str| pb::CacheScope {
            kind: kind.into(),
            target: target.into(),
        };
        assert!(scope_of(None).is_err());
        assert!(scope_of(Some(&s("tenant", ""))).is_ok());
        assert!(scope_of(Some(&s("tenant", "x"))).is_err());
        assert!(scope_of(Some(&s("model", ""))).is_err());
        assert_eq!(
            scope_of(Some(&s("key", " backend "))).unwrap(),
            (CacheScope::Key, "backend".to_string())
        );
        assert!(scope_of(Some(&s("route", "x"))).is_err());
        let bad = pb::CacheSettings {
            hit_cost_bps: 10_001,
            ..Default::default()
        };
        assert!(settings_of(Some(&bad)).is_err());
        assert!(settings_of(None).is_err());
        let ok = pb::CacheSettings {
            enabled: true,
            hit_cost_bps: 10_000,
            ..Default::default()
        };
        assert!(settings_of(Some(&ok)).unwrap().enabled);
    }
}
