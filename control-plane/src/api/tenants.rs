//! `TenantService`.

use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::tenant_service_server::TenantService;
use tonic::{Request, Response, Status};

use super::access::Need;
use super::status::store_status;
use super::ApiState;
use crate::store::Tenant;

#[derive(Debug, Clone)]
pub struct TenantApi {
    state: ApiState,
}

impl TenantApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

pub(crate) fn tenant_to_proto(t: Tenant) -> pb::Tenant {
    pb::Tenant {
        id: t.id,
        name: t.name,
        active: t.active,
        created_at_ms: t.created_at_ms,
    }
}

/// `[a-z0-9][a-z0-9-]{0,62}`: safe in URLs, file names and log fields, and
/// never contains '_', so it cannot be mistaken for an id.
pub fn validate_tenant_name(name: &str) -> Result<(), Status> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "invalid tenant name {name:?}: use 1-63 lowercase letters, digits or '-', starting with a letter or digit"
        )))
    }
}

#[tonic::async_trait]
impl TenantService for TenantApi {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        self.state.require_operator(&request, Need::Write).await?;
        let req = request.into_inner();
        validate_tenant_name(&req.name)?;
        let t = self
            .state
            .store
            .create_tenant(&req.name)
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %t.id, name = %t.name, "tenant created");
        Ok(Response::new(tenant_to_proto(t)))
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let t = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        Ok(Response::new(tenant_to_proto(t)))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let principal = self.state.principal(&request).await?;
        let tenants = match principal.tenant_id() {
            // A tenant user sees only its own tenant.
            Some(own) => vec![self
                .state
                .store
                .get_tenant(own)
                .await
                .map_err(store_status)?],
            None => self
                .state
                .store
                .list_tenants()
                .await
                .map_err(store_status)?,
        };
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: tenants.into_iter().map(tenant_to_proto).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_name_rules() {
        for ok in ["a", "acme", "acme-2", "0day", &"a".repeat(63)] {
            assert!(validate_tenant_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-acme", "Acme", "ac_me", "ac me", "é", &"a".repeat(64)] {
            assert!(validate_tenant_name(bad).is_err(), "{bad}");
        }
    }
}
