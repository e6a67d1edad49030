//! Domain configuration → `sync.v1.Snapshot`, the one place provider keys are
//! decrypted.

use tollgate_core::time::now_ms;
use tollgate_proto::sync::v1 as pb;

use crate::crypto::{self, CryptoError, KeyEncryptionKey};
use crate::store::{CacheScope, ConfigData, StoredRoutePolicy};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Names the provider, never the key.
    #[error("cannot decrypt the API key of provider {provider_id}: {source}")]
    Decrypt {
        provider_id: String,
        source: CryptoError,
    },
}

/// The cache policy set on one scope of a tenant, if any.
fn cache_policy_of(
    t: &crate::store::TenantData,
    scope: CacheScope,
    target_id: &str,
) -> Option<pb::CachePolicy> {
    t.cache_policies
        .iter()
        .find(|p| p.scope == scope && p.target_id == target_id)
        .map(|p| pb::CachePolicy {
            enabled: p.settings.enabled,
            ttl_ms: p.settings.ttl_ms,
            max_entry_bytes: p.settings.max_entry_bytes,
            only_deterministic: p.settings.only_deterministic,
            hit_cost_bps: p.settings.hit_cost_bps,
        })
}

/// A model with its route: targets in priority order and the policy.
fn model_config(m: &crate::store::Model, t: &crate::store::TenantData) -> pb::ModelConfig {
    let targets = t
        .route_targets
        .iter()
        .filter(|rt| rt.model_id == m.id)
        .map(|rt| pb::RouteTargetConfig {
            provider_id: rt.provider_id.clone(),
            upstream_model: rt.upstream_model.clone(),
            priority: u32::try_from(rt.priority).unwrap_or(u32::MAX),
            weight: u32::try_from(rt.weight).unwrap_or(1),
        })
        .collect();
    let policy = (!m.route_policy.is_empty()).then(|| {
        let p = StoredRoutePolicy::parse(&m.route_policy);
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
    });
    pb::ModelConfig {
        id: m.id.clone(),
        name: m.name.clone(),
        provider_id: m.provider_id.clone(),
        upstream_model: m.upstream_model.clone(),
        created_at_ms: m.created_at_ms,
        targets,
        policy,
        aliases: Vec::new(),
        cache_policy: cache_policy_of(t, CacheScope::Model, &m.id),
    }
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
                disabled: p.disabled,
                settings: p.provider.settings.clone().into_iter().collect(),
            });
        }
        tenants.push(pb::TenantConfig {
            id: t.tenant.id.clone(),
            name: t.tenant.name.clone(),
            active: t.tenant.active,
            providers,
            models: t.models.iter().map(|m| model_config(m, t)).collect(),
            keys: t
                .keys
                .iter()
                .map(|k| pb::CallerKeyConfig {
                    id: k.id.clone(),
                    name: k.name.clone(),
                    key_hash: k.key_hash.clone(),
                    expires_at_ms: k.expires_at_ms,
                    cache_policy: cache_policy_of(t, CacheScope::Key, &k.id),
                })
                .collect(),
            cache_policy: cache_policy_of(t, CacheScope::Tenant, ""),
        });
    }
    Ok(pb::Snapshot {
        version: data.version,
        created_at_ms: now_ms(),
        tenants,
    })
}
