//! Domain configuration → `sync.v1.Snapshot`, the one place provider keys are
//! decrypted.

use tollgate_core::time::now_ms;
use tollgate_proto::sync::v1 as pb;

use crate::crypto::{self, CryptoError, KeyEncryptionKey};
use crate::store::ConfigData;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Names the provider, never the key.
    #[error("cannot decrypt the API key of provider {provider_id}: {source}")]
    Decrypt {
        provider_id: String,
        source: CryptoError,
    },
}

/// Builds the snapshot of `data`. Fails as a whole rather than shipping a
/// provider without its key.
pub async fn build_snapshot(
    data: &ConfigData,
    kek: &dyn KeyEncryptionKey,
) -> Result<pb::Snapshot, SnapshotError> {
    let mut tenants = Vec::with_capacity(data.tenants.len());
    for t in &data.tenants {
        let mut providers = Vec::with_capacity(t.providers.len());
        for p in &t.providers {
            let api_key = if p.api_key_ciphertext.is_empty() {
                String::new()
            } else {
                crypto::open(kek, &p.api_key_ciphertext, &p.provider.id)
                    .await
                    .map_err(|source| SnapshotError::Decrypt {
                        provider_id: p.provider.id.clone(),
                        source,
                    })?
                    .into_exposed()
            };
            providers.push(pb::ProviderConfig {
                id: p.provider.id.clone(),
                name: p.provider.name.clone(),
                kind: p.provider.kind.clone(),
                base_url: p.provider.base_url.clone(),
                api_key,
                settings: p.provider.settings.clone().into_iter().collect(),
            });
        }
        tenants.push(pb::TenantConfig {
            id: t.tenant.id.clone(),
            name: t.tenant.name.clone(),
            active: t.tenant.active,
            providers,
            models: t
                .models
                .iter()
                .map(|m| pb::ModelConfig {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    provider_id: m.provider_id.clone(),
                    upstream_model: m.upstream_model.clone(),
                    created_at_ms: m.created_at_ms,
                })
                .collect(),
            keys: t
                .keys
                .iter()
                .map(|k| pb::CallerKeyConfig {
                    id: k.id.clone(),
                    name: k.name.clone(),
                    key_hash: k.key_hash.clone(),
                    expires_at_ms: k.expires_at_ms,
                })
                .collect(),
        });
    }
    Ok(pb::Snapshot {
        version: data.version,
        created_at_ms: now_ms(),
        tenants,
    })
}
