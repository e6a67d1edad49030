//! Reads everything a data-plane snapshot needs in one transaction.

use std::collections::HashMap;

use sqlx::Row;

use super::keys::{key_from_row, KEY_COLUMNS};
use super::models::{model_from_row, MODEL_SELECT};
use super::providers::{provider_from_row, PROVIDER_COLUMNS};
use super::routes::{target_from_row, RouteTarget, TARGET_SELECT};
use super::tenants::tenant_from_row;
use super::{read_version, CallerKey, Model, Provider, Store, StoreResult, Tenant};

/// A provider with its still-encrypted API key.
#[derive(Debug, Clone)]
pub struct ProviderWithSecret {
    pub provider: Provider,
    /// Envelope ciphertext; empty when the provider has no key.
    pub api_key_ciphertext: String,
    /// Out of rotation (its credential was rejected by the provider).
    pub disabled: bool,
}

#[derive(Debug, Clone)]
pub struct TenantData {
    pub tenant: Tenant,
    pub providers: Vec<ProviderWithSecret>,
    pub models: Vec<Model>,
    /// Targets of the models' routes, by priority within each model.
    pub route_targets: Vec<RouteTarget>,
    /// Keys not revoked (expired ones included: the data plane checks expiry).
    pub keys: Vec<CallerKey>,
    /// Response cache policies (tenant, model and key scopes).
    pub cache_policies: Vec<super::CachePolicyRow>,
}

/// The configuration at `version` (or newer: the version is read first, so
/// the data is never older than the label and a later change always triggers
/// another build).
#[derive(Debug, Clone)]
pub struct ConfigData {
    pub version: u64,
    pub tenants: Vec<TenantData>,
}

impl Store {
    pub async fn load_config(&self) -> StoreResult<ConfigData> {
        let mut tx = self.pool.begin().await?;
        let version = read_version(&mut *tx).await?;
        let tenants = sqlx::query(
            "SELECT id, name, active, created_at_ms FROM tenants WHERE active = $1 ORDER BY name",
        )
        .bind(1_i64)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(tenant_from_row)
        .collect::<StoreResult<Vec<_>>>()?;

        let providers = sqlx::query(&format!(
            "SELECT {PROVIDER_COLUMNS}, api_key_ciphertext, disabled_at_ms FROM providers ORDER BY name"
        ))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| {
            Ok(ProviderWithSecret {
                provider: provider_from_row(row)?,
                api_key_ciphertext: row.try_get("api_key_ciphertext")?,
                disabled: row.try_get::<i64, _>("disabled_at_ms")? != 0,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        let models = sqlx::query(&format!("{MODEL_SELECT} ORDER BY m.name"))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(model_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let route_targets = sqlx::query(&format!(
            "{TARGET_SELECT} ORDER BY rt.model_id, rt.priority, rt.created_at_ms, rt.id"
        ))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(target_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
        let keys = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM caller_keys WHERE revoked_at_ms = $1 ORDER BY name"
        ))
        .bind(0_i64)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(key_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
        let cache_policies = Store::all_cache_policies(&mut tx).await?;
        tx.commit().await?;

        // Group once by tenant instead of filtering per tenant.
        let mut providers = group_by_tenant(providers, |p| &p.provider.tenant_id);
        let mut models = group_by_tenant(models, |m| &m.tenant_id);
        let mut keys = group_by_tenant(keys, |k| &k.tenant_id);
        let mut route_targets = group_by_tenant(route_targets, |t| &t.tenant_id);
        let mut cache_policies = group_by_tenant(cache_policies, |p| &p.tenant_id);
        let tenants = tenants
            .into_iter()
            .map(|tenant| TenantData {
                providers: providers.remove(&tenant.id).unwrap_or_default(),
                models: models.remove(&tenant.id).unwrap_or_default(),
                route_targets: route_targets.remove(&tenant.id).unwrap_or_default(),
                keys: keys.remove(&tenant.id).unwrap_or_default(),
                cache_policies: cache_policies.remove(&tenant.id).unwrap_or_default(),
                tenant,
            })
            .collect();
        Ok(ConfigData { version, tenants })
    }
}

/// Splits `items` by tenant id, keeping their order within each tenant.
fn group_by_tenant<T>(items: Vec<T>, tenant_of: impl Fn(&T) -> &String) -> HashMap<String, Vec<T>> {
    let mut map: HashMap<String, Vec<T>> = HashMap::new();
    for item in items {
        map.entry(tenant_of(&item).clone()).or_default().push(item);
    }
    map
}
