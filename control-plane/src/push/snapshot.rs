//! Domain configuration → `sync.v1.Snapshot`, the one place provider keys are
//! decrypted.

use tollgate_core::time::now_ms;
use tollgate_proto::sync::v1 as pb;

use crate::crypto::{self, CryptoError, KeyEncryptionKey};
use crate::store::{CacheScope, ConfigData, StoredRoutePolicy};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No stored provider key could be decrypted: the master key is not the
    /// one they were sealed with. Names a provider, never a key.
    #[error("cannot decrypt any provider API key (first: provider {provider_id}: {source}); is this the right master key?")]
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
    let (price, target_prices) = crate::billing::model_prices(m, t);
    pb::ModelConfig {
        price,
        target_prices,
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

/// A guardrail with its attachments split by scope.
fn guardrail_config(g: &crate::store::Guardrail) -> pb::GuardrailConfig {
    let ids = |scope: &str| {
        g.attachments
            .iter()
            .filter(|a| a.scope == scope)
            .map(|a| a.target_id.clone())
            .collect()
    };
    pb::GuardrailConfig {
        id: g.id.clone(),
        name: g.name.clone(),
        kind: g.kind.clone(),
        action: g.action.clone(),
        direction: g.direction.clone(),
        settings: g.settings.clone(),
        tenant_wide: g.attachments.iter().any(|a| a.scope == "tenant"),
        key_ids: ids("key"),
        model_ids: ids("model"),
    }
}

/// Builds the snapshot of `data`.
///
/// A provider whose key cannot be decrypted (a damaged ciphertext) ships
/// disabled and without a key, so the rest of the configuration still
/// reaches the data planes and routes skip it; an error names it. When no
/// stored key at all can be decrypted the master key is wrong: the build
/// fails as a whole and data planes keep serving their last snapshot.
pub async fn build_snapshot(
    data: &ConfigData,
    kek: &dyn KeyEncryptionKey,
) -> Result<pb::Snapshot, SnapshotError> {
    let mut tenants = Vec::with_capacity(data.tenants.len());
    let (mut sealed, mut first_failure) = (0usize, None);
    let mut opened = 0usize;
    for t in &data.tenants {
        let mut providers = Vec::with_capacity(t.providers.len());
        for p in &t.providers {
            let mut unreadable = false;
            let api_key = if p.api_key_ciphertext.is_empty() {
                String::new()
            } else {
                sealed += 1;
                match crypto::open(kek, &p.api_key_ciphertext, &p.provider.id).await {
                    Ok(key) => {
                        opened += 1;
                        key.into_exposed()
                    }
                    Err(source) => {
                        tracing::error!(
                            tenant_id = %t.tenant.id,
                            provider_id = %p.provider.id,
                            error = %source,
                            "cannot decrypt a provider's API key: it ships disabled until the credential is set again"
                        );
                        first_failure.get_or_insert((p.provider.id.clone(), source));
                        unreadable = true;
                        String::new()
                    }
                }
            };
            providers.push(pb::ProviderConfig {
                id: p.provider.id.clone(),
                name: p.provider.name.clone(),
                kind: p.provider.kind.clone(),
                base_url: p.provider.base_url.clone(),
                api_key,
                disabled: p.disabled || unreadable,
                settings: p.provider.settings.clone().into_iter().collect(),
            });
        }
        tenants.push(pb::TenantConfig {
            billing: crate::billing::tenant_billing(t),
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
                    allowed_provider_ids: k.allowed_providers.clone(),
                    cache_policy: cache_policy_of(t, CacheScope::Key, &k.id),
                    budgeted: t.budgeted_keys.contains(&k.id),
                })
                .collect(),
            guardrails: t.guardrails.iter().map(guardrail_config).collect(),
            cache_policy: cache_policy_of(t, CacheScope::Tenant, ""),
            rate_limits: crate::quota::rate_limit_rules(t),
        });
    }
    if let Some((provider_id, source)) = first_failure {
        if sealed > 0 && opened == 0 {
            return Err(SnapshotError::Decrypt {
                provider_id,
                source,
            });
        }
    }
    Ok(pb::Snapshot {
        version: data.version,
        created_at_ms: now_ms(),
        tenants,
    })
}
