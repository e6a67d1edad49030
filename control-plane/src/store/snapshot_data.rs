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
    /// Guardrail policies with their attachments.
    pub guardrails: Vec<super::Guardrail>,
    /// Billing: prices of the tenant's models, and (multiplier, frozen) of
    /// its account when it has one.
    pub prices: Vec<super::StoredPrice>,
    pub account: Option<(u32, bool)>,
    /// Response cache policies (tenant, model and key scopes).
    pub cache_policies: Vec<super::CachePolicyRow>,
    /// Ids of its keys that have budgets of their own.
    pub budgeted_keys: std::collections::HashSet<String>,
    /// Rate limits with their tiers resolved (tenant, model and key scopes).
    pub rate_limits: Vec<super::EffectiveRateLimit>,
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
    /// A read-only transaction that sees one consistent state of the
    /// database. Postgres' default READ COMMITTED gives each statement its
    /// own snapshot, so a change committed between two SELECTs would mix two
    /// configurations: ask for REPEATABLE READ (one snapshot for the whole
    /// transaction). SQLite in WAL mode already reads from one snapshot from
    /// the first read to the end of the transaction.
    pub(crate) async fn begin_snapshot_read(
        &self,
    ) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.pool.begin().await?;
        if tx.backend_name().eq_ignore_ascii_case("postgresql") {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    pub async fn load_config(&self) -> StoreResult<ConfigData> {
        let mut tx = self.begin_snapshot_read().await?;
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
        let guardrails = super::guardrails::all_guardrails(&mut tx).await?;
        let prices = super::billing::load_prices(&mut tx).await?;
        let accounts = super::billing::load_accounts(&mut tx).await?;
        let cache_policies = Store::all_cache_policies(&mut tx).await?;
        let budgeted = super::budgets::budgeted_keys(&mut tx).await?;
        let rate_limits = Store::all_effective_rate_limits(&mut tx).await?;
        tx.commit().await?;

        // Group once by tenant instead of filtering per tenant.
        let mut providers = group_by_tenant(providers, |p| &p.provider.tenant_id);
        let mut models = group_by_tenant(models, |m| &m.tenant_id);
        let mut keys = group_by_tenant(keys, |k| &k.tenant_id);
        let mut route_targets = group_by_tenant(route_targets, |t| &t.tenant_id);
        let mut guardrails = group_by_tenant(guardrails, |g| &g.tenant_id);
        let mut prices = group_by_tenant(prices, |p| &p.tenant_id);
        let mut accounts: HashMap<String, (u32, bool)> = accounts
            .into_iter()
            .map(|(tenant, bps, frozen)| (tenant, (bps, frozen)))
            .collect();
        let mut cache_policies = group_by_tenant(cache_policies, |p| &p.tenant_id);
        let mut rate_limits = group_by_tenant(rate_limits, |r| &r.tenant_id);
        let tenants = tenants
            .into_iter()
            .map(|tenant| {
                let keys = keys.remove(&tenant.id).unwrap_or_default();
                let budgeted_keys = keys
                    .iter()
                    .filter(|k| budgeted.contains(&k.id))
                    .map(|k| k.id.clone())
                    .collect();
                TenantData {
                    providers: providers.remove(&tenant.id).unwrap_or_default(),
                    models: models.remove(&tenant.id).unwrap_or_default(),
                    route_targets: route_targets.remove(&tenant.id).unwrap_or_default(),
                    keys,
                    guardrails: guardrails.remove(&tenant.id).unwrap_or_default(),
                    prices: prices.remove(&tenant.id).unwrap_or_default(),
                    account: accounts.remove(&tenant.id),
                    cache_policies: cache_policies.remove(&tenant.id).unwrap_or_default(),
                    budgeted_keys,
                    rate_limits: rate_limits.remove(&tenant.id).unwrap_or_default(),
                    tenant,
                }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod snapshot_isolation_tests {
    use sqlx::Row;

    use crate::store::test_backends::test_stores;

    #[tokio::test]
    async fn snapshot_reads_use_one_consistent_snapshot() {
        for t in test_stores().await {
            let mut tx = t.store.begin_snapshot_read().await.unwrap();
            if t.backend == "postgres" {
                let level: String = sqlx::query("SHOW transaction_isolation")
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap()
                    .try_get(0)
                    .unwrap();
                assert_eq!(level, "repeatable read");
            }
            let before = super::read_version(&mut *tx).await.unwrap();
            // A configuration change commits while the snapshot is open…
            let change = t.store.begin_config_change().await.unwrap();
            t.store.commit_config_change(change).await.unwrap();
            // …and the snapshot still sees the state it started with.
            let after = super::read_version(&mut *tx).await.unwrap();
            assert_eq!(after, before, "{}", t.backend);
            tx.commit().await.unwrap();
            assert_eq!(t.store.config_version().await.unwrap(), before + 1);
        }
    }
}
