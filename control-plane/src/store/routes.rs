//! Routes: the targets of a model (provider × upstream model, priority,
//! weight), its routing policy, and the rotation state of provider
//! credentials (taken out after a provider rejected them).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use tollgate_core::time::now_ms;

use super::models::{model_from_row, MODEL_SELECT};
use super::{unique_or_db, Model, Store, StoreError, StoreResult};

/// One target of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTarget {
    pub id: String,
    pub tenant_id: String,
    pub model_id: String,
    pub provider_id: String,
    pub provider_name: String,
    /// '' : the model's upstream model (or a wildcard's match).
    pub upstream_model: String,
    pub priority: i64,
    pub weight: i64,
    /// The provider's credential is out of rotation.
    pub provider_disabled: bool,
}

/// A target to add: model and provider by id or name within the tenant.
#[derive(Debug, Clone)]
pub struct NewRouteTarget {
    pub tenant_id: String,
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    pub priority: i64,
    pub weight: i64,
}

/// The policy of a route as stored (JSON in `models.route_policy`); zero
/// and empty values mean the data plane's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredRoutePolicy {
    pub strategy: String,
    pub max_attempts: u32,
    pub retries_per_target: u32,
    pub no_same_target_retry: bool,
    pub connect_timeout_ms: u64,
    pub total_timeout_ms: u64,
    pub ttft_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: u64,
    pub fallback_model: String,
}

impl StoredRoutePolicy {
    /// '' and unparsable text (never written by us) are the defaults.
    pub fn parse(text: &str) -> StoredRoutePolicy {
        serde_json::from_str(text).unwrap_or_default()
    }
}

/// A model with its targets and policy.
#[derive(Debug, Clone)]
pub struct RouteView {
    pub model: Model,
    pub policy: StoredRoutePolicy,
    pub targets: Vec<RouteTarget>,
}

/// Rotation state of one provider credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderHealthRow {
    pub provider_id: String,
    pub provider_name: String,
    /// 0 while in rotation.
    pub disabled_at_ms: i64,
    pub disabled_reason: String,
}

pub(super) const TARGET_SELECT: &str = "SELECT rt.id, rt.tenant_id, rt.model_id, rt.provider_id, \
     p.name AS provider_name, rt.upstream_model, rt.priority, rt.weight, p.disabled_at_ms \
     FROM route_targets rt JOIN providers p ON p.id = rt.provider_id AND p.tenant_id = rt.tenant_id";

pub(super) fn target_from_row(row: &AnyRow) -> StoreResult<RouteTarget> {
    Ok(RouteTarget {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        model_id: row.try_get("model_id")?,
        provider_id: row.try_get("provider_id")?,
        provider_name: row.try_get("provider_name")?,
        upstream_model: row.try_get("upstream_model")?,
        priority: row.try_get("priority")?,
        weight: row.try_get("weight")?,
        provider_disabled: row.try_get::<i64, _>("disabled_at_ms")? != 0,
    })
}

async fn resolve_model(
    tx: &mut sqlx::AnyConnection,
    tenant_id: &str,
    model: &str,
) -> StoreResult<String> {
    sqlx::query("SELECT id FROM models WHERE tenant_id = $1 AND (id = $2 OR name = $2)")
        .bind(tenant_id)
        .bind(model)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("model '{model}'")))?
        .try_get::<String, _>(0)
        .map_err(StoreError::from)
}

async fn resolve_provider(
    tx: &mut sqlx::AnyConnection,
    tenant_id: &str,
    provider: &str,
) -> StoreResult<String> {
    sqlx::query("SELECT id FROM providers WHERE tenant_id = $1 AND (id = $2 OR name = $2)")
        .bind(tenant_id)
        .bind(provider)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("provider '{provider}'")))?
        .try_get::<String, _>(0)
        .map_err(StoreError::from)
}

impl Store {
    pub async fn add_route_target(&self, new: NewRouteTarget) -> StoreResult<RouteView> {
        if new.weight < 1 {
            return Err(StoreError::Invalid("weight must be at least 1".into()));
        }
        if new.priority < 0 {
            return Err(StoreError::Invalid("priority must not be negative".into()));
        }
        let mut change = self.begin_config_change().await?;
        let model_id = resolve_model(&mut change.tx, &new.tenant_id, &new.model).await?;
        let provider_id = resolve_provider(&mut change.tx, &new.tenant_id, &new.provider).await?;
        let id = tollgate_core::ids::new_id("rt");
        sqlx::query(
            "INSERT INTO route_targets (id, tenant_id, model_id, provider_id, upstream_model, \
             priority, weight, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(&new.tenant_id)
        .bind(&model_id)
        .bind(&provider_id)
        .bind(&new.upstream_model)
        .bind(new.priority)
        .bind(new.weight)
        .bind(now_ms())
        .execute(&mut *change.tx)
        .await
        .map_err(|e| {
            unique_or_db(e, || {
                format!(
                    "target {} / '{}' of model '{}'",
                    new.provider, new.upstream_model, new.model
                )
            })
        })?;
        self.commit_config_change(change).await?;
        self.get_route(&new.tenant_id, &model_id).await
    }

    /// Removes the targets of `provider` (only the one with `upstream_model`
    /// when given). The last target of a route cannot be removed: delete the
    /// model instead.
    pub async fn remove_route_target(
        &self,
        tenant_id: &str,
        model: &str,
        provider: &str,
        upstream_model: Option<&str>,
    ) -> StoreResult<RouteView> {
        let mut change = self.begin_config_change().await?;
        let model_id = resolve_model(&mut change.tx, tenant_id, model).await?;
        let provider_id = resolve_provider(&mut change.tx, tenant_id, provider).await?;
        let done = match upstream_model {
            Some(u) => {
                sqlx::query(
                    "DELETE FROM route_targets WHERE model_id = $1 AND provider_id = $2 \
                     AND upstream_model = $3",
                )
                .bind(&model_id)
                .bind(&provider_id)
                .bind(u)
                .execute(&mut *change.tx)
                .await?
            }
            None => {
                sqlx::query("DELETE FROM route_targets WHERE model_id = $1 AND provider_id = $2")
                    .bind(&model_id)
                    .bind(&provider_id)
                    .execute(&mut *change.tx)
                    .await?
            }
        };
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "target {provider} of model '{model}'"
            )));
        }
        let first = sqlx::query(
            "SELECT provider_id, upstream_model FROM route_targets WHERE model_id = $1 \
             ORDER BY priority, created_at_ms, id",
        )
        .bind(&model_id)
        .fetch_optional(&mut *change.tx)
        .await?;
        let Some(first) = first else {
            return Err(StoreError::Invalid(format!(
                "that is the last target of model '{model}'; delete the model instead"
            )));
        };
        // The model's primary target follows the first remaining one.
        let (primary, upstream): (String, String) = (
            first.try_get("provider_id")?,
            first.try_get("upstream_model")?,
        );
        let upstream_sql = if upstream.is_empty() {
            "UPDATE models SET provider_id = $1 WHERE id = $2"
        } else {
            "UPDATE models SET provider_id = $1, upstream_model = $3 WHERE id = $2"
        };
        let mut q = sqlx::query(upstream_sql).bind(&primary).bind(&model_id);
        if !upstream.is_empty() {
            q = q.bind(&upstream);
        }
        q.execute(&mut *change.tx).await?;
        self.commit_config_change(change).await?;
        self.get_route(tenant_id, &model_id).await
    }

    pub async fn set_route_policy(
        &self,
        tenant_id: &str,
        model: &str,
        policy: &StoredRoutePolicy,
    ) -> StoreResult<RouteView> {
        let text = serde_json::to_string(policy)
            .map_err(|e| StoreError::Invalid(format!("route policy: {e}")))?;
        let mut change = self.begin_config_change().await?;
        let model_id = resolve_model(&mut change.tx, tenant_id, model).await?;
        sqlx::query("UPDATE models SET route_policy = $1 WHERE id = $2")
            .bind(&text)
            .bind(&model_id)
            .execute(&mut *change.tx)
            .await?;
        self.commit_config_change(change).await?;
        self.get_route(tenant_id, &model_id).await
    }

    pub async fn get_route(&self, tenant_id: &str, model: &str) -> StoreResult<RouteView> {
        let row = sqlx::query(&format!(
            "{MODEL_SELECT} WHERE m.tenant_id = $1 AND (m.id = $2 OR m.name = $2)"
        ))
        .bind(tenant_id)
        .bind(model)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("model '{model}'")))?;
        let model = model_from_row(&row)?;
        let policy = StoredRoutePolicy::parse(&model.route_policy);
        let targets = sqlx::query(&format!(
            "{TARGET_SELECT} WHERE rt.model_id = $1 ORDER BY rt.priority, rt.created_at_ms, rt.id"
        ))
        .bind(&model.id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(target_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(RouteView {
            model,
            policy,
            targets,
        })
    }

    /// Takes a provider credential out of rotation (a data plane saw it
    /// rejected). Returns false when it already was out (no new version).
    pub async fn disable_provider(
        &self,
        tenant_id: &str,
        provider_id: &str,
        reason: &str,
    ) -> StoreResult<bool> {
        let mut change = self.begin_config_change().await?;
        let done = sqlx::query(
            "UPDATE providers SET disabled_at_ms = $1, disabled_reason = $2 \
             WHERE tenant_id = $3 AND id = $4 AND disabled_at_ms = $5",
        )
        .bind(now_ms().max(1))
        .bind(reason)
        .bind(tenant_id)
        .bind(provider_id)
        .bind(0_i64)
        .execute(&mut *change.tx)
        .await?;
        if done.rows_affected() == 0 {
            // Dropping the change rolls the version bump back.
            return Ok(false);
        }
        self.commit_config_change(change).await?;
        Ok(true)
    }

    /// Puts a provider credential back into rotation.
    pub async fn enable_provider(&self, tenant_id: &str, provider: &str) -> StoreResult<()> {
        let mut change = self.begin_config_change().await?;
        let provider_id = resolve_provider(&mut change.tx, tenant_id, provider).await?;
        sqlx::query("UPDATE providers SET disabled_at_ms = $1, disabled_reason = $2 WHERE id = $3")
            .bind(0_i64)
            .bind("")
            .bind(&provider_id)
            .execute(&mut *change.tx)
            .await?;
        self.commit_config_change(change).await?;
        Ok(())
    }

    pub async fn list_provider_health(
        &self,
        tenant_id: &str,
    ) -> StoreResult<Vec<ProviderHealthRow>> {
        sqlx::query(
            "SELECT id, name, disabled_at_ms, disabled_reason FROM providers \
             WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(ProviderHealthRow {
                provider_id: row.try_get("id")?,
                provider_name: row.try_get("name")?,
                disabled_at_ms: row.try_get("disabled_at_ms")?,
                disabled_reason: row.try_get("disabled_reason")?,
            })
        })
        .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::{NewModel, NewProvider};
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

    #[tokio::test]
    async fn targets_policy_and_rotation() {
        for t in crate::store::test_backends::test_stores().await {
            let store = t.store.clone();
            let t = store.create_tenant("a").await.unwrap();
            let p1 = provider(&store, &t.id, "p1").await;
            let p2 = provider(&store, &t.id, "p2").await;
            store
                .add_model(NewModel {
                    id: new_id(prefix::MODEL),
                    tenant_id: t.id.clone(),
                    name: "gpt".into(),
                    provider: "p1".into(),
                    upstream_model: "up-1".into(),
                })
                .await
                .unwrap();
            let r = store.get_route(&t.id, "gpt").await.unwrap();
            assert_eq!(r.targets.len(), 1);
            assert_eq!(
                (
                    r.targets[0].provider_id.as_str(),
                    r.targets[0].upstream_model.as_str()
                ),
                (p1.as_str(), "up-1")
            );
            let r = store
                .add_route_target(NewRouteTarget {
                    tenant_id: t.id.clone(),
                    model: "gpt".into(),
                    provider: "p2".into(),
                    upstream_model: "up-2".into(),
                    priority: 1,
                    weight: 3,
                })
                .await
                .unwrap();
            assert_eq!(r.targets.len(), 2);
            assert_eq!(
                (r.targets[1].provider_name.as_str(), r.targets[1].weight),
                ("p2", 3)
            );
            // p2 is now in use by the route.
            assert!(matches!(
                store.delete_provider(&t.id, "p2").await,
                Err(StoreError::InUse(_))
            ));
            let policy = StoredRoutePolicy {
                strategy: "ordered".into(),
                max_attempts: 4,
                ..Default::default()
            };
            let r = store.set_route_policy(&t.id, "gpt", &policy).await.unwrap();
            assert_eq!(r.policy, policy);
            // Removing the primary makes p2 the model's provider.
            let r = store
                .remove_route_target(&t.id, "gpt", "p1", None)
                .await
                .unwrap();
            assert_eq!(r.targets.len(), 1);
            assert_eq!(r.model.provider_id, p2);
            assert_eq!(r.model.upstream_model, "up-2");
            assert!(matches!(
                store.remove_route_target(&t.id, "gpt", "p2", None).await,
                Err(StoreError::Invalid(_))
            ));
            // Rotation.
            assert!(store
                .disable_provider(&t.id, &p2, "401 from node dp-1")
                .await
                .unwrap());
            let v = store.config_version().await.unwrap();
            assert!(!store.disable_provider(&t.id, &p2, "again").await.unwrap());
            assert_eq!(store.config_version().await.unwrap(), v);
            let h = store.list_provider_health(&t.id).await.unwrap();
            assert_eq!(h.iter().filter(|h| h.disabled_at_ms != 0).count(), 1);
            assert_eq!(h[1].disabled_reason, "401 from node dp-1");
            assert!(store.get_route(&t.id, "gpt").await.unwrap().targets[0].provider_disabled);
            store.enable_provider(&t.id, "p2").await.unwrap();
            assert!(!store.get_route(&t.id, "gpt").await.unwrap().targets[0].provider_disabled);
            store.delete_model(&t.id, "gpt").await.unwrap();
            store.delete_provider(&t.id, "p2").await.unwrap();
        }
    }
}
