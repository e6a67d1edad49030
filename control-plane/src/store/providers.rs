//! Upstream providers of a tenant. The API key is stored only as an envelope
//! ciphertext (see `crypto.rs`) plus a display fingerprint and last 4 chars.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;
use tollgate_core::time::now_ms;

use super::{unique_or_db, Store, StoreError, StoreResult};

/// A provider as shown to operators: no key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub kind: String,
    pub base_url: String,
    pub key_fingerprint: String,
    pub key_last4: String,
    pub created_at_ms: i64,
    /// Kind-specific settings (never secrets).
    pub settings: BTreeMap<String, String>,
}

/// A validated provider to insert. The id is chosen by the caller because the
/// ciphertext is bound to it.
#[derive(Debug, Clone)]
pub struct NewProvider {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub kind: String,
    pub base_url: String,
    /// Envelope ciphertext, or empty when no key was given.
    pub api_key_ciphertext: String,
    pub key_fingerprint: String,
    pub key_last4: String,
    pub settings: BTreeMap<String, String>,
}

pub(super) const PROVIDER_COLUMNS: &str =
    "id, tenant_id, name, kind, base_url, key_fingerprint, key_last4, created_at_ms, settings";

pub(super) fn provider_from_row(row: &AnyRow) -> StoreResult<Provider> {
    Ok(Provider {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        base_url: row.try_get("base_url")?,
        key_fingerprint: row.try_get("key_fingerprint")?,
        key_last4: row.try_get("key_last4")?,
        created_at_ms: row.try_get("created_at_ms")?,
        // Written by this code only; an unreadable value reads as empty.
        settings: serde_json::from_str(&row.try_get::<String, _>("settings")?).unwrap_or_default(),
    })
}

impl Store {
    pub async fn add_provider(&self, new: NewProvider) -> StoreResult<Provider> {
        let created_at_ms = now_ms();
        let mut change = self.begin_config_change().await?;
        sqlx::query(
            "INSERT INTO providers (id, tenant_id, name, kind, base_url, api_key_ciphertext, \
             key_fingerprint, key_last4, created_at_ms, settings) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&new.id)
        .bind(&new.tenant_id)
        .bind(&new.name)
        .bind(&new.kind)
        .bind(&new.base_url)
        .bind(&new.api_key_ciphertext)
        .bind(&new.key_fingerprint)
        .bind(&new.key_last4)
        .bind(created_at_ms)
        .bind(serde_json::to_string(&new.settings).unwrap_or_else(|_| "{}".into()))
        .execute(&mut *change.tx)
        .await
        .map_err(|e| unique_or_db(e, || format!("provider '{}'", new.name)))?;
        self.commit_config_change(change).await?;
        Ok(Provider {
            id: new.id,
            tenant_id: new.tenant_id,
            name: new.name,
            kind: new.kind,
            base_url: new.base_url,
            key_fingerprint: new.key_fingerprint,
            key_last4: new.key_last4,
            created_at_ms,
            settings: new.settings,
        })
    }

    pub async fn list_providers(&self, tenant_id: &str) -> StoreResult<Vec<Provider>> {
        sqlx::query(&format!(
            "SELECT {PROVIDER_COLUMNS} FROM providers WHERE tenant_id = $1 ORDER BY name"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(provider_from_row)
        .collect()
    }

    /// Deletes a provider of `tenant_id` by id or name. Refused while models
    /// route to it, so no model is left pointing nowhere.
    pub async fn delete_provider(&self, tenant_id: &str, id_or_name: &str) -> StoreResult<()> {
        let mut change = self.begin_config_change().await?;
        let id: String =
            sqlx::query("SELECT id FROM providers WHERE tenant_id = $1 AND (id = $2 OR name = $2)")
                .bind(tenant_id)
                .bind(id_or_name)
                .fetch_optional(&mut *change.tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("provider '{id_or_name}'")))?
                .try_get(0)?;
        let users: Vec<String> = sqlx::query(
            "SELECT name FROM models WHERE tenant_id = $1 AND (provider_id = $2 OR id IN \
             (SELECT model_id FROM route_targets WHERE provider_id = $2)) ORDER BY name",
        )
        .bind(tenant_id)
        .bind(&id)
        .fetch_all(&mut *change.tx)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
        if !users.is_empty() {
            return Err(StoreError::InUse(format!(
                "provider '{id_or_name}' is used by models {}; delete them first",
                users.join(", ")
            )));
        }
        sqlx::query("DELETE FROM providers WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(&id)
            .execute(&mut *change.tx)
            .await?;
        self.commit_config_change(change).await?;
        Ok(())
    }
}
