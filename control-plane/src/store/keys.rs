//! Caller keys: only the SHA-256 of each key is stored.

use sqlx::any::AnyRow;
use sqlx::Row;
use tollgate_core::time::now_ms;

use super::{unique_or_db, Store, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    pub created_at_ms: i64,
    /// 0: never expires.
    pub expires_at_ms: i64,
    /// 0: active.
    pub revoked_at_ms: i64,
    /// Provider ids the key may be routed to; empty: all of its tenant's.
    pub allowed_providers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct NewCallerKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    pub expires_at_ms: i64,
    /// Provider ids (of the same tenant); empty: no restriction.
    pub allowed_providers: Vec<String>,
}

pub(super) const KEY_COLUMNS: &str =
    "id, tenant_id, name, prefix, key_hash, created_at_ms, expires_at_ms, revoked_at_ms, \
     allowed_providers";

pub(super) fn key_from_row(row: &AnyRow) -> StoreResult<CallerKey> {
    Ok(CallerKey {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        key_hash: row.try_get("key_hash")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
        allowed_providers: row
            .try_get::<String, _>("allowed_providers")?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

impl Store {
    pub async fn create_key(&self, new: NewCallerKey) -> StoreResult<CallerKey> {
        let created_at_ms = now_ms();
        let mut change = self.begin_config_change().await?;
        sqlx::query(
            "INSERT INTO caller_keys (id, tenant_id, name, prefix, key_hash, created_at_ms, \
             expires_at_ms, revoked_at_ms, allowed_providers) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&new.id)
        .bind(&new.tenant_id)
        .bind(&new.name)
        .bind(&new.prefix)
        .bind(&new.key_hash)
        .bind(created_at_ms)
        .bind(new.expires_at_ms)
        .bind(0_i64)
        .bind(new.allowed_providers.join(","))
        .execute(&mut *change.tx)
        .await
        .map_err(|e| unique_or_db(e, || format!("key '{}'", new.name)))?;
        self.commit_config_change(change).await?;
        Ok(CallerKey {
            id: new.id,
            tenant_id: new.tenant_id,
            name: new.name,
            prefix: new.prefix,
            key_hash: new.key_hash,
            created_at_ms,
            expires_at_ms: new.expires_at_ms,
            revoked_at_ms: 0,
            allowed_providers: new.allowed_providers,
        })
    }

    pub async fn list_keys(&self, tenant_id: &str) -> StoreResult<Vec<CallerKey>> {
        sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM caller_keys WHERE tenant_id = $1 ORDER BY name"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }

    /// Revokes a key of `tenant_id` by id or name. Revoking again returns the
    /// key unchanged (same `revoked_at_ms`, no new config version).
    pub async fn revoke_key(&self, tenant_id: &str, id_or_name: &str) -> StoreResult<CallerKey> {
        let mut change = self.begin_config_change().await?;
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM caller_keys WHERE tenant_id = $1 AND (id = $2 OR name = $2)"
        ))
        .bind(tenant_id)
        .bind(id_or_name)
        .fetch_optional(&mut *change.tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("key '{id_or_name}'")))?;
        let mut key = key_from_row(&row)?;
        if key.revoked_at_ms != 0 {
            // Nothing changes: dropping the transaction undoes the bump.
            return Ok(key);
        }
        key.revoked_at_ms = now_ms();
        sqlx::query("UPDATE caller_keys SET revoked_at_ms = $1 WHERE tenant_id = $2 AND id = $3")
            .bind(key.revoked_at_ms)
            .bind(tenant_id)
            .bind(&key.id)
            .execute(&mut *change.tx)
            .await?;
        self.commit_config_change(change).await?;
        Ok(key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tollgate_core::ids::{new_id, prefix};

    #[tokio::test]
    async fn revoke_is_idempotent_and_tenant_scoped() {
        for t in crate::store::test_backends::test_stores().await {
            let store = t.store.clone();
            let a = store.create_tenant("a").await.unwrap();
            let b = store.create_tenant("b").await.unwrap();
            let k = store
                .create_key(NewCallerKey {
                    id: new_id(prefix::CALLER_KEY),
                    tenant_id: b.id.clone(),
                    name: "ci".into(),
                    prefix: "tg-AbCd".into(),
                    key_hash: "00".repeat(32),
                    expires_at_ms: 0,
                    allowed_providers: Vec::new(),
                })
                .await
                .unwrap();
            assert!(matches!(
                store.revoke_key(&a.id, &k.id).await,
                Err(StoreError::NotFound(_))
            ));
            assert_eq!(store.list_keys(&b.id).await.unwrap()[0].revoked_at_ms, 0);

            let v = store.config_version().await.unwrap();
            let r1 = store.revoke_key(&b.id, "ci").await.unwrap();
            assert!(r1.revoked_at_ms > 0);
            assert_eq!(store.config_version().await.unwrap(), v + 1);
            let r2 = store.revoke_key(&b.id, &k.id).await.unwrap();
            assert_eq!(r1, r2);
            assert_eq!(store.config_version().await.unwrap(), v + 1);
        }
    }
}
