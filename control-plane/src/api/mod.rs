//! Admin API services (`tollgate.admin.v1`). Each file converts proto ↔
//! domain at the edge, validates input and calls the store; errors reach the
//! caller only through [`status`].

pub mod data_planes;
pub mod keys;
pub mod models;
pub mod providers;
pub mod routes;
pub mod status;
pub mod tenants;
pub mod usage;

use std::sync::Arc;

use tonic::Status;

use crate::crypto::KeyEncryptionKey;
use crate::data_planes::DataPlaneRegistry;
use crate::store::{Store, Tenant};

/// What the admin services share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub kek: Arc<dyn KeyEncryptionKey>,
    pub registry: Arc<DataPlaneRegistry>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

impl ApiState {
    /// The tenant named by a request's `tenant` field (id or name).
    async fn tenant(&self, reference: &str) -> Result<Tenant, Status> {
        let reference = reference.trim();
        if reference.is_empty() {
            return Err(Status::invalid_argument("tenant is required (id or name)"));
        }
        self.store
            .get_tenant(reference)
            .await
            .map_err(status::store_status)
    }
}

/// Rejects empty or whitespace-containing names with a message naming the field.
fn require_token(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(Status::invalid_argument(format!(
            "{field} must not contain whitespace"
        )));
    }
    if value.len() > 200 {
        return Err(Status::invalid_argument(format!(
            "{field} is longer than 200 bytes"
        )));
    }
    Ok(())
}
