//! Admin API services (`tollgate.admin.v1`). Each file converts proto ↔
//! domain at the edge, validates input and calls the store; errors reach the
//! caller only through [`status`].

pub mod access;
pub mod audit;
pub mod billing;
pub mod cache;
pub mod console;
pub mod data_planes;
pub mod dp_groups;
pub mod guardrails;
pub mod incidents;
pub mod keys;
pub mod models;
pub mod providers;
pub mod rate_limits;
pub mod routes;
pub mod status;
pub mod tenants;
pub mod usage;
pub mod usage_query;
pub mod users;

use std::sync::Arc;

use tonic::Status;

use crate::crypto::KeyEncryptionKey;
use crate::data_planes::DataPlaneRegistry;
use crate::store::Store;

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

// The tenant lookup is `ApiState::tenant_for` in `access.rs`: the one
// permission check (caller's tenant and role) of every admin RPC.

/// Rejects empty names and names with whitespace or control characters
/// (names travel in HTTP headers and logs), with a message naming the field.
fn require_token(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Status::invalid_argument(format!(
            "{field} must not contain whitespace or control characters"
        )));
    }
    if value.len() > 200 {
        return Err(Status::invalid_argument(format!(
            "{field} is longer than 200 bytes"
        )));
    }
    Ok(())
}

/// Objects are addressed "by id or name", so a name must not look like an id
/// of its kind (else one reference could match two objects).
fn reject_id_lookalike(field: &str, value: &str, id_prefix: &str) -> Result<(), Status> {
    if tollgate_core::ids::has_prefix(value, id_prefix) {
        return Err(Status::invalid_argument(format!(
            "{field} must not start with \"{id_prefix}_\": that prefix is reserved for ids"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn names_reject_control_chars_and_id_lookalikes() {
        assert!(require_token("name", "gpt-4o/mini:1").is_ok());
        assert!(require_token("name", "bad\u{7}bell").is_err());
        assert!(require_token("name", "two words").is_err());
        assert!(reject_id_lookalike("model name", "md_0190abc", "md").is_err());
        assert!(reject_id_lookalike("model name", "md-large", "md").is_ok());
    }
}
