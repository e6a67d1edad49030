//! `KeyService`. The caller key is generated here, returned once, and only
//! its SHA-256 is stored.

use tollgate_core::ids::{new_id, prefix};
use tollgate_core::keys::{display_prefix, generate_caller_key, hash_caller_key};
use tollgate_core::time::now_ms;
use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::key_service_server::KeyService;
use tonic::{Request, Response, Status};

use super::access::{Need, Principal};
use super::status::store_status;
use super::{reject_id_lookalike, require_token, ApiState};
use crate::store::{CallerKey, NewCallerKey};

#[derive(Debug, Clone)]
pub struct KeyApi {
    state: ApiState,
}

impl KeyApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }

    /// Below admin, a member may revoke or regenerate (`verb`) only the keys
    /// it created.
    async fn may_change_own(
        &self,
        principal: &Principal,
        tenant_id: &str,
        reference: &str,
        verb: &str,
    ) -> Result<(), Status> {
        principal.check(Need::CreateKey)?;
        let Principal::User { user, .. } = principal else {
            return Ok(());
        };
        let store = &self.state.store;
        let key = store
            .list_keys(tenant_id)
            .await
            .map_err(store_status)?
            .into_iter()
            .find(|k| k.id == reference || k.name == reference)
            .ok_or_else(|| Status::not_found(format!("key '{reference}' not found")))?;
        match store.key_creator(&key.id).await.map_err(store_status)? {
            Some(creator) if creator == user.id => Ok(()),
            _ => Err(Status::permission_denied(format!(
                "role member may {verb} only the keys it created"
            ))),
        }
    }
}

fn key_to_proto(k: CallerKey) -> pb::CallerKey {
    pb::CallerKey {
        id: k.id,
        tenant_id: k.tenant_id,
        name: k.name,
        prefix: k.prefix,
        created_at_ms: k.created_at_ms,
        expires_at_ms: k.expires_at_ms,
        revoked_at_ms: k.revoked_at_ms,
        allowed_provider_ids: k.allowed_providers,
    }
}

#[tonic::async_trait]
impl KeyService for KeyApi {
    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        let (principal, tenant) = self
            .state
            .scoped(&request, &request.get_ref().tenant, Need::CreateKey)
            .await?;
        let req = request.into_inner();
        let name = req.name.trim().to_owned();
        require_token("key name", &name)?;
        reject_id_lookalike("key name", &name, tollgate_core::ids::prefix::CALLER_KEY)?;
        if req.expires_at_ms < 0 {
            return Err(Status::invalid_argument(
                "expires_at_ms must be 0 (no expiry) or epoch milliseconds",
            ));
        }
        if req.expires_at_ms != 0 && req.expires_at_ms <= now_ms() {
            return Err(Status::invalid_argument("expires_at_ms is in the past"));
        }
        // Providers named by id or name, within this tenant only.
        let mut allowed_providers = Vec::with_capacity(req.providers.len());
        if !req.providers.is_empty() {
            let providers = self
                .state
                .store
                .list_providers(&tenant.id)
                .await
                .map_err(store_status)?;
            for reference in &req.providers {
                let reference = reference.trim();
                let Some(p) = providers
                    .iter()
                    .find(|p| p.id == reference || p.name == reference)
                else {
                    return Err(Status::not_found(format!(
                        "provider '{reference}' not found in this tenant"
                    )));
                };
                if !allowed_providers.contains(&p.id) {
                    allowed_providers.push(p.id.clone());
                }
            }
        }
        let secret = generate_caller_key();
        let key = self
            .state
            .store
            .create_key(NewCallerKey {
                id: new_id(prefix::CALLER_KEY),
                tenant_id: tenant.id,
                name,
                prefix: display_prefix(&secret),
                key_hash: hash_caller_key(&secret),
                expires_at_ms: req.expires_at_ms,
                allowed_providers,
            })
            .await
            .map_err(store_status)?;
        if let Principal::User { user, .. } = &principal {
            // Lets a member revoke the keys it created.
            self.state
                .store
                .set_key_creator(&key.id, &user.id)
                .await
                .map_err(store_status)?;
        }
        tracing::info!(tenant_id = %key.tenant_id, key_id = %key.id, name = %key.name, "caller key created");
        Ok(Response::new(pb::CreateKeyResponse {
            key: Some(key_to_proto(key)),
            secret,
        }))
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let keys = self
            .state
            .store
            .list_keys(&tenant.id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListKeysResponse {
            keys: keys.into_iter().map(key_to_proto).collect(),
        }))
    }

    async fn revoke_key(
        &self,
        request: Request<pb::RevokeKeyRequest>,
    ) -> Result<Response<pb::CallerKey>, Status> {
        let (principal, tenant) = self
            .state
            .scoped(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let req = request.into_inner();
        let reference = req.key.trim();
        if reference.is_empty() {
            return Err(Status::invalid_argument("key is required (id or name)"));
        }
        if principal.check(Need::Write).is_err() {
            self.may_change_own(&principal, &tenant.id, reference, "revoke")
                .await?;
        }
        let key = self
            .state
            .store
            .revoke_key(&tenant.id, reference)
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %key.tenant_id, key_id = %key.id, "caller key revoked");
        Ok(Response::new(key_to_proto(key)))
    }

    async fn regenerate_key(
        &self,
        request: Request<pb::RegenerateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        let (principal, tenant) = self
            .state
            .scoped(&request, &request.get_ref().tenant, Need::CreateKey)
            .await?;
        let req = request.into_inner();
        let reference = req.key.trim();
        if reference.is_empty() {
            return Err(Status::invalid_argument("key is required (id or name)"));
        }
        if principal.check(Need::Write).is_err() {
            self.may_change_own(&principal, &tenant.id, reference, "regenerate")
                .await?;
        }
        let secret = generate_caller_key();
        let key = self
            .state
            .store
            .regenerate_key(
                &tenant.id,
                reference,
                &display_prefix(&secret),
                &hash_caller_key(&secret),
            )
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %key.tenant_id, key_id = %key.id, name = %key.name, "caller key regenerated");
        Ok(Response::new(pb::CreateKeyResponse {
            key: Some(key_to_proto(key)),
            secret,
        }))
    }
}
