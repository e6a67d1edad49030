//! Response cache policies of a tenant, its models and its keys. Every query
//! is filtered by tenant; a model or key is resolved within the tenant only.

use sqlx::Row;

use super::{from_bool, to_bool, Store, StoreError, StoreResult};

/// Where a policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    Tenant,
    Model,
    Key,
}

impl CacheScope {
    pub fn parse(s: &str) -> Option<CacheScope> {
        match s {
            "tenant" => Some(CacheScope::Tenant),
            "model" => Some(CacheScope::Model),
            "key" => Some(CacheScope::Key),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CacheScope::Tenant => "tenant",
            CacheScope::Model => "model",
            CacheScope::Key => "key",
        }
    }
}

/// The settings of one policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheSettings {
    pub enabled: bool,
    pub ttl_ms: u64,
    pub max_entry_bytes: u64,
    pub only_deterministic: bool,
    pub hit_cost_bps: u32,
}

/// A stored policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicyRow {
    pub tenant_id: String,
    pub scope: CacheScope,
    /// Empty for the tenant scope.
    pub target_id: String,
    pub settings: CacheSettings,
    pub updated_at_ms: i64,
}

const COLUMNS: &str = "tenant_id, scope, target_id, enabled, ttl_ms, max_entry_bytes, \
                       only_deterministic, hit_cost_bps, updated_at_ms";

fn row_to_policy(row: &sqlx::any::AnyRow) -> StoreResult<CachePolicyRow> {
    let scope: String = row.try_get("scope")?;
    let scope = CacheScope::parse(&scope)
        .ok_or_else(|| StoreError::Invalid(format!("unknown cache policy scope '{scope}'")))?;
    Ok(CachePolicyRow {
        tenant_id: row.try_get("tenant_id")?,
        scope,
        target_id: row.try_get("target_id")?,
        settings: CacheSettings {
            enabled: to_bool(row.try_get("enabled")?),
            ttl_ms: u64::try_from(row.try_get::<i64, _>("ttl_ms")?).unwrap_or(0),
            max_entry_bytes: u64::try_from(row.try_get::<i64, _>("max_entry_bytes")?).unwrap_or(0),
            only_deterministic: to_bool(row.try_get("only_deterministic")?),
            hit_cost_bps: u32::try_from(row.try_get::<i64, _>("hit_cost_bps")?).unwrap_or(0),
        },
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

impl Store {
    /// The id of the scope's target within `tenant_id` (by id or name; a
    /// revoked key cannot get a policy).
    async fn cache_target(
        conn: &mut sqlx::AnyConnection,
        tenant_id: &str,
        scope: CacheScope,
        target: &str,
    ) -> StoreResult<String> {
        let (sql, what) = match scope {
            CacheScope::Tenant => return Ok(String::new()),
            CacheScope::Model => (
                "SELECT id FROM models WHERE tenant_id = $1 AND (id = $2 OR name = $2)",
                "model",
            ),
            CacheScope::Key => (
                "SELECT id FROM caller_keys WHERE tenant_id = $1 AND (id = $2 OR name = $2) \
                 AND revoked_at_ms = 0",
                "key",
            ),
        };
        sqlx::query(sql)
            .bind(tenant_id)
            .bind(target)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("{what} '{target}'")))?
            .try_get::<String, _>(0)
            .map_err(StoreError::from)
    }

    /// Creates or replaces the policy of one scope of `tenant_id`.
    pub async fn set_cache_policy(
        &self,
        tenant_id: &str,
        scope: CacheScope,
        target: &str,
        settings: CacheSettings,
        now_ms: i64,
    ) -> StoreResult<CachePolicyRow> {
        let mut change = self.begin_config_change().await?;
        let target_id = Self::cache_target(&mut change.tx, tenant_id, scope, target).await?;
        sqlx::query(
            "DELETE FROM cache_policies WHERE tenant_id = $1 AND scope = $2 AND target_id = $3",
        )
        .bind(tenant_id)
        .bind(scope.as_str())
        .bind(target_id.as_str())
        .execute(&mut *change.tx)
        .await?;
        sqlx::query(&format!(
            "INSERT INTO cache_policies ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(tenant_id)
        .bind(scope.as_str())
        .bind(target_id.as_str())
        .bind(from_bool(settings.enabled))
        .bind(i64::try_from(settings.ttl_ms).unwrap_or(i64::MAX))
        .bind(i64::try_from(settings.max_entry_bytes).unwrap_or(i64::MAX))
        .bind(from_bool(settings.only_deterministic))
        .bind(i64::from(settings.hit_cost_bps))
        .bind(now_ms)
        .execute(&mut *change.tx)
        .await?;
        self.commit_config_change(change).await?;
        Ok(CachePolicyRow {
            tenant_id: tenant_id.to_string(),
            scope,
            target_id,
            settings,
            updated_at_ms: now_ms,
        })
    }

    /// Every policy of `tenant_id`, tenant scope first.
    pub async fn list_cache_policies(&self, tenant_id: &str) -> StoreResult<Vec<CachePolicyRow>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM cache_policies WHERE tenant_id = $1 \
             ORDER BY CASE scope WHEN 'tenant' THEN 0 WHEN 'model' THEN 1 ELSE 2 END, target_id"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(row_to_policy)
        .collect()
    }

    /// Removes the policy of one scope; false when there was none.
    pub async fn clear_cache_policy(
        &self,
        tenant_id: &str,
        scope: CacheScope,
        target: &str,
    ) -> StoreResult<bool> {
        let mut change = self.begin_config_change().await?;
        let target_id = Self::cache_target(&mut change.tx, tenant_id, scope, target).await?;
        let done = sqlx::query(
            "DELETE FROM cache_policies WHERE tenant_id = $1 AND scope = $2 AND target_id = $3",
        )
        .bind(tenant_id)
        .bind(scope.as_str())
        .bind(target_id.as_str())
        .execute(&mut *change.tx)
        .await?;
        if done.rows_affected() == 0 {
            // Nothing changed: no new snapshot version.
            change.tx.rollback().await?;
            return Ok(false);
        }
        self.commit_config_change(change).await?;
        Ok(true)
    }

    /// All policies (snapshot building), in the snapshot's transaction.
    pub(super) async fn all_cache_policies(
        conn: &mut sqlx::AnyConnection,
    ) -> StoreResult<Vec<CachePolicyRow>> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM cache_policies"))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(row_to_policy)
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::test_support::temp_store;
    use super::super::{NewCallerKey, NewModel, NewProvider};
    use super::*;
    use tollgate_core::ids::{new_id, prefix};

    async fn tenant_with_model(store: &Store, name: &str) -> (String, String, String) {
        let t = store.create_tenant(name).await.unwrap();
        let p = store
            .add_provider(NewProvider {
                id: new_id(prefix::PROVIDER),
                tenant_id: t.id.clone(),
                name: "up".into(),
                kind: "openai".into(),
                base_url: "http://127.0.0.1:9/v1".into(),
                api_key_ciphertext: String::new(),
                key_fingerprint: String::new(),
                key_last4: String::new(),
                settings: Default::default(),
            })
            .await
            .unwrap();
        let m = store
            .add_model(NewModel {
                id: new_id(prefix::MODEL),
                tenant_id: t.id.clone(),
                name: "gpt".into(),
                provider: p.id,
                upstream_model: "gpt".into(),
            })
            .await
            .unwrap();
        let k = store
            .create_key(NewCallerKey {
                id: new_id(prefix::CALLER_KEY),
                tenant_id: t.id.clone(),
                name: "backend".into(),
                prefix: "tg-x".into(),
                key_hash: format!("{:0>64}", name.len()),
                expires_at_ms: 0,
                allowed_providers: Vec::new(),
            })
            .await
            .unwrap();
        (t.id, m.id, k.id)
    }

    #[tokio::test]
    async fn policies_are_set_replaced_listed_and_cleared_per_tenant() {
        let (store, _dir) = temp_store().await;
        let (a, model_a, key_a) = tenant_with_model(&store, "a").await;
        let (b, _, _) = tenant_with_model(&store, "bb").await;
        let v0 = store.config_version().await.unwrap();
        let on = CacheSettings {
            enabled: true,
            ttl_ms: 1000,
            ..Default::default()
        };
        store
            .set_cache_policy(&a, CacheScope::Tenant, "", on, 1)
            .await
            .unwrap();
        store
            .set_cache_policy(&a, CacheScope::Model, "gpt", on, 2)
            .await
            .unwrap();
        let replaced = CacheSettings { ttl_ms: 5, ..on };
        let row = store
            .set_cache_policy(&a, CacheScope::Model, &model_a, replaced, 3)
            .await
            .unwrap();
        assert_eq!(row.target_id, model_a);
        store
            .set_cache_policy(&a, CacheScope::Key, "backend", on, 4)
            .await
            .unwrap();
        assert!(store.config_version().await.unwrap() >= v0 + 4);
        let list = store.list_cache_policies(&a).await.unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].scope, CacheScope::Tenant);
        assert_eq!(list[1].settings.ttl_ms, 5);
        assert_eq!(list[2].target_id, key_a);
        // Tenant b sees none of a's, and cannot name a's model or key.
        assert!(store.list_cache_policies(&b).await.unwrap().is_empty());
        assert!(matches!(
            store
                .set_cache_policy(&b, CacheScope::Key, &key_a, on, 5)
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store
                .clear_cache_policy(&b, CacheScope::Model, &model_a)
                .await,
            Err(StoreError::NotFound(_))
        ));
        let v = store.config_version().await.unwrap();
        assert!(store
            .clear_cache_policy(&a, CacheScope::Key, "backend")
            .await
            .unwrap());
        assert!(!store
            .clear_cache_policy(&a, CacheScope::Key, "backend")
            .await
            .unwrap());
        assert_eq!(store.config_version().await.unwrap(), v + 1);
        assert_eq!(store.list_cache_policies(&a).await.unwrap().len(), 2);
    }
}
