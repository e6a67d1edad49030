//! `DataPlaneGroupService`: data-plane groups and their registration tokens
//! (docs/operations.md).
//!
//! Operators create groups. Tokens of a tenant-scoped group may also be
//! managed by that tenant's owners and admins (and listed by its viewers):
//! every call of a tenant user names its tenant, resolved through
//! `tenant_for`, and only groups scoped to that tenant are found.

use std::sync::Arc;

use tollgate_core::time::now_ms;
use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::data_plane_group_service_server::DataPlaneGroupService;
use tonic::{Request, Response, Status};

use super::access::Need;
use super::status::store_status;
use super::{reject_id_lookalike, require_token, ApiState};
use crate::dp_auth::{DpTokenTable, SHARED_GROUP};
use crate::store::{DpGroup, DpToken};

#[derive(Debug, Clone)]
pub struct DpGroupApi {
    state: ApiState,
    tokens: Arc<DpTokenTable>,
}

impl DpGroupApi {
    pub fn new(state: ApiState, tokens: Arc<DpTokenTable>) -> Self {
        Self { state, tokens }
    }

    /// The tenant the caller acts for: `None` for an operator naming no
    /// tenant (every group), else the tenant its groups must be scoped to.
    async fn scope<T>(
        &self,
        request: &Request<T>,
        tenant: &str,
        need: Need,
    ) -> Result<Option<String>, Status> {
        let principal = self.state.principal(request).await?;
        if tenant.trim().is_empty() {
            if principal.tenant_id().is_some() {
                return Err(Status::invalid_argument("tenant is required (id or name)"));
            }
            principal.check(need)?;
            return Ok(None);
        }
        let t = self.state.tenant_of(&principal, tenant, need).await?;
        Ok(Some(t.id))
    }

    /// Applies a token write at once (the sync port's table is in memory).
    async fn reload_tokens(&self) {
        if let Err(e) = self.tokens.reload_after_write(&self.state.store).await {
            // The periodic reload retries within seconds.
            tracing::error!(error = %e, "cannot reload data-plane tokens after a change");
        }
    }
}

fn group_pb(g: DpGroup) -> pb::DataPlaneGroup {
    pb::DataPlaneGroup {
        id: g.id,
        name: g.name,
        tenant_id: g.tenant_id.unwrap_or_default(),
        created_at_ms: g.created_at_ms,
    }
}

fn token_pb(t: DpToken) -> pb::DataPlaneToken {
    pb::DataPlaneToken {
        id: t.id,
        group_id: t.group_id,
        name: t.name,
        last4: t.last4,
        created_at_ms: t.created_at_ms,
        expires_at_ms: t.expires_at_ms,
        revoked_at_ms: t.revoked_at_ms,
    }
}

#[tonic::async_trait]
impl DataPlaneGroupService for DpGroupApi {
    async fn create_data_plane_group(
        &self,
        request: Request<pb::CreateDataPlaneGroupRequest>,
    ) -> Result<Response<pb::DataPlaneGroup>, Status> {
        self.state.require_operator(&request, Need::Write).await?;
        let name = request.get_ref().name.trim().to_string();
        require_token("name", &name)?;
        reject_id_lookalike("name", &name, crate::store::DP_GROUP_PREFIX)?;
        if name == SHARED_GROUP {
            return Err(Status::invalid_argument(
                "\"shared\" is the built-in group of the control plane's own data-plane token",
            ));
        }
        let tenant = request.get_ref().tenant.trim().to_string();
        let tenant_id = if tenant.is_empty() {
            None
        } else {
            Some(
                self.state
                    .tenant_for(&request, &tenant, Need::Write)
                    .await?
                    .id,
            )
        };
        let g = self
            .state
            .store
            .create_dp_group(&name, tenant_id.as_deref())
            .await
            .map_err(store_status)?;
        tracing::info!(group_id = %g.id, name = %g.name, tenant_id = ?g.tenant_id, "data-plane group created");
        Ok(Response::new(group_pb(g)))
    }

    async fn list_data_plane_groups(
        &self,
        request: Request<pb::ListDataPlaneGroupsRequest>,
    ) -> Result<Response<pb::ListDataPlaneGroupsResponse>, Status> {
        let scope = self
            .scope(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let groups = self
            .state
            .store
            .list_dp_groups(scope.as_deref())
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListDataPlaneGroupsResponse {
            groups: groups.into_iter().map(group_pb).collect(),
        }))
    }

    async fn create_data_plane_token(
        &self,
        request: Request<pb::CreateDataPlaneTokenRequest>,
    ) -> Result<Response<pb::CreatedDataPlaneToken>, Status> {
        let r = request.get_ref();
        let scope = self.scope(&request, &r.tenant, Need::Write).await?;
        let name = r.name.trim();
        if name.len() > 200 || name.chars().any(char::is_control) {
            return Err(Status::invalid_argument(
                "name must be at most 200 bytes without control characters",
            ));
        }
        if r.expires_at_ms < 0 || (r.expires_at_ms != 0 && r.expires_at_ms <= now_ms()) {
            return Err(Status::invalid_argument(
                "expires_at_ms must be in the future (or 0: never)",
            ));
        }
        let group = self
            .state
            .store
            .get_dp_group(r.group.trim(), scope.as_deref())
            .await
            .map_err(store_status)?;
        let (token, secret) = self
            .state
            .store
            .create_dp_token(&group.id, name, r.expires_at_ms)
            .await
            .map_err(store_status)?;
        self.reload_tokens().await;
        tracing::info!(token_id = %token.id, group = %group.name, "data-plane registration token created");
        Ok(Response::new(pb::CreatedDataPlaneToken {
            token: Some(token_pb(token)),
            secret,
        }))
    }

    async fn list_data_plane_tokens(
        &self,
        request: Request<pb::ListDataPlaneTokensRequest>,
    ) -> Result<Response<pb::ListDataPlaneTokensResponse>, Status> {
        let r = request.get_ref();
        let scope = self.scope(&request, &r.tenant, Need::Read).await?;
        let group = self
            .state
            .store
            .get_dp_group(r.group.trim(), scope.as_deref())
            .await
            .map_err(store_status)?;
        let tokens = self
            .state
            .store
            .list_dp_tokens(&group.id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListDataPlaneTokensResponse {
            tokens: tokens.into_iter().map(token_pb).collect(),
        }))
    }

    async fn revoke_data_plane_token(
        &self,
        request: Request<pb::RevokeDataPlaneTokenRequest>,
    ) -> Result<Response<pb::DataPlaneToken>, Status> {
        let r = request.get_ref();
        let scope = self.scope(&request, &r.tenant, Need::Write).await?;
        let token = self
            .state
            .store
            .revoke_dp_token(r.token_id.trim(), scope.as_deref())
            .await
            .map_err(store_status)?;
        self.reload_tokens().await;
        tracing::info!(token_id = %token.id, "data-plane registration token revoked");
        Ok(Response::new(token_pb(token)))
    }
}
