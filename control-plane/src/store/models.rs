//! Public model names of a tenant, each routed to one of the tenant's
//! providers.

use sqlx::any::AnyRow;
use sqlx::Row;
use tollgate_core::time::now_ms;

use super::{unique_or_db, Store, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub provider_id: String,
    pub provider_name: String,
    pub upstream_model: String,
    pub created_at_ms: i64,
    /// JSON of the route policy; '' : defaults (see `routes.rs`).
    pub route_policy: String,
}

#[derive(Debug, Clone)]
pub struct NewModel {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// Provider id or name, looked up within `tenant_id` only.
    pub provider: String,
    pub upstream_model: String,
}

pub(super) fn model_from_row(row: &AnyRow) -> StoreResult<Model> {
    Ok(Model {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        provider_id: row.try_get("provider_id")?,
        provider_name: row.try_get("provider_name")?,
        upstream_model: row.try_get("upstream_model")?,
        created_at_ms: row.try_get("created_at_ms")?,
        route_policy: row.try_get("route_policy")?,
    })
}

pub(super) const MODEL_SELECT: &str = "SELECT m.id, m.tenant_id, m.name, m.provider_id, \
     p.name AS provider_name, m.upstream_model, m.created_at_ms, m.route_policy \
     FROM models m JOIN providers p ON p.id = m.provider_id AND p.tenant_id = m.tenant_id";

impl Store {
    pub async fn add_model(&self, new: NewModel) -> StoreResult<Model> {
        let created_at_ms = now_ms();
        let mut change = self.begin_config_change().await?;
        // The provider is resolved inside the tenant, in the same transaction
        // as the insert, so it can neither belong to another tenant nor vanish.
        let row = sqlx::query(
            "SELECT id, name FROM providers WHERE tenant_id = $1 AND (id = $2 OR name = $2)",
        )
        .bind(&new.tenant_id)
        .bind(&new.provider)
        .fetch_optional(&mut *change.tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("provider '{}'", new.provider)))?;
        let provider_id: String = row.try_get("id")?;
        let provider_name: String = row.try_get("name")?;
        sqlx::query(
            "INSERT INTO models (id, tenant_id, name, provider_id, upstream_model, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&new.id)
        .bind(&new.tenant_id)
        .bind(&new.name)
        .bind(&provider_id)
        .bind(&new.upstream_model)
        .bind(created_at_ms)
        .execute(&mut *change.tx)
        .await
        .map_err(|e| unique_or_db(e, || format!("model '{}'", new.name)))?;
        // A model is a route with one target until more are added.
        sqlx::query(
            "INSERT INTO route_targets (id, tenant_id, model_id, provider_id, upstream_model, \
             priority, weight, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(format!("rt_{}", new.id))
        .bind(&new.tenant_id)
        .bind(&new.id)
        .bind(&provider_id)
        .bind(&new.upstream_model)
        .bind(0_i64)
        .bind(1_i64)
        .bind(created_at_ms)
        .execute(&mut *change.tx)
        .await?;
        self.commit_config_change(change).await?;
        Ok(Model {
            id: new.id,
            tenant_id: new.tenant_id,
            name: new.name,
            provider_id,
            provider_name,
            upstream_model: new.upstream_model,
            created_at_ms,
            route_policy: String::new(),
        })
    }

    pub async fn list_models(&self, tenant_id: &str) -> StoreResult<Vec<Model>> {
        sqlx::query(&format!(
            "{MODEL_SELECT} WHERE m.tenant_id = $1 ORDER BY m.name"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(model_from_row)
        .collect()
    }

    /// Deletes a model of `tenant_id` by id or public name.
    pub async fn delete_model(&self, tenant_id: &str, id_or_name: &str) -> StoreResult<()> {
        let mut change = self.begin_config_change().await?;
        sqlx::query(
            "DELETE FROM route_targets WHERE tenant_id = $1 AND model_id IN \
             (SELECT id FROM models WHERE tenant_id = $1 AND (id = $2 OR name = $2))",
        )
        .bind(tenant_id)
        .bind(id_or_name)
        .execute(&mut *change.tx)
        .await?;
        let done =
            sqlx::query("DELETE FROM models WHERE tenant_id = $1 AND (id = $2 OR name = $2)")
                .bind(tenant_id)
                .bind(id_or_name)
                .execute(&mut *change.tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("model '{id_or_name}'")));
        }
        self.commit_config_change(change).await?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::NewProvider;
    use super::*;
    use tollgate_core::ids::{new_id, prefix};

    async fn provider(store: &Store, tenant_id: &str, name: &str) -> String {
        store
            .add_provider(NewProvider {
                id: new_id(prefix::PROVIDER),
                tenant_id: tenant_id.into(),
                name: name.into(),
                kind: "mock".into(),
                base_url: String::new(),
                api_key_ciphertext: String::new(),
                key_fingerprint: String::new(),
                key_last4: String::new(),
                settings: Default::default(),
            })
            .await
            .unwrap()
            .id
    }

    fn model(tenant_id: &str, name: &str, provider: &str) -> NewModel {
        NewModel {
            id: new_id(prefix::MODEL),
            tenant_id: tenant_id.into(),
            name: name.into(),
            provider: provider.into(),
            upstream_model: format!("up-{name}"),
        }
    }

    #[tokio::test]
    async fn models_resolve_providers_within_tenant_only() {
        for t in crate::store::test_backends::test_stores().await {
            let store = t.store.clone();
            let a = store.create_tenant("a").await.unwrap();
            let b = store.create_tenant("b").await.unwrap();
            let pa = provider(&store, &a.id, "openai").await;
            let pb = provider(&store, &b.id, "only-b").await;

            let m = store
                .add_model(model(&a.id, "gpt", "openai"))
                .await
                .unwrap();
            assert_eq!(m.provider_id, pa);
            assert_eq!(m.provider_name, "openai");
            assert_eq!(m.upstream_model, "up-gpt");

            // Neither B's provider name nor its id is usable from A.
            for r in ["only-b", pb.as_str()] {
                assert!(matches!(
                    store.add_model(model(&a.id, "x", r)).await,
                    Err(StoreError::NotFound(_))
                ));
            }
            assert!(matches!(
                store.add_model(model(&a.id, "gpt", &pa)).await,
                Err(StoreError::AlreadyExists(_))
            ));
            assert_eq!(store.list_models(&b.id).await.unwrap(), vec![]);
            assert_eq!(store.list_models(&a.id).await.unwrap(), vec![m.clone()]);

            // A provider in use cannot be deleted; B cannot delete A's model.
            assert!(matches!(
                store.delete_provider(&a.id, "openai").await,
                Err(StoreError::InUse(msg)) if msg.contains("gpt")
            ));
            assert!(matches!(
                store.delete_model(&b.id, &m.id).await,
                Err(StoreError::NotFound(_))
            ));
            store.delete_model(&a.id, "gpt").await.unwrap();
            assert!(matches!(
                store.delete_provider(&b.id, &pa).await,
                Err(StoreError::NotFound(_))
            ));
            store.delete_provider(&a.id, &pa).await.unwrap();
            assert_eq!(store.list_providers(&a.id).await.unwrap(), vec![]);
            assert_eq!(store.list_providers(&b.id).await.unwrap().len(), 1);
        }
    }
}
