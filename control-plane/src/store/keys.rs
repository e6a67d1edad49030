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
        let mut key = key_in_change(&mut change, tenant_id, id_or_name).await?;
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

impl Store {
    /// Gives a key of `tenant_id` (by id or name) a new secret: its hash and
    /// display prefix are replaced in one config change, so the snapshot
    /// that carries the new hash no longer carries the old one. Everything
    /// else (id, name, allowlist, expiry, and what hangs off the id: budgets,
    /// limits, policies, guardrails) stays. A revoked or expired key is
    /// refused.
    pub async fn regenerate_key(
        &self,
        tenant_id: &str,
        id_or_name: &str,
        prefix: &str,
        key_hash: &str,
    ) -> StoreResult<CallerKey> {
        let mut change = self.begin_config_change().await?;
        let mut key = key_in_change(&mut change, tenant_id, id_or_name).await?;
        // Refusals drop the transaction, which undoes the version bump.
        if key.revoked_at_ms != 0 {
            return Err(StoreError::InUse(format!(
                "key '{}' is revoked; create a new key instead",
                key.name
            )));
        }
        if key.expires_at_ms != 0 && key.expires_at_ms <= now_ms() {
            return Err(StoreError::InUse(format!(
                "key '{}' has expired; create a new key instead",
                key.name
            )));
        }
        sqlx::query(
            "UPDATE caller_keys SET key_hash = $1, prefix = $2 \
             WHERE tenant_id = $3 AND id = $4 AND revoked_at_ms = 0",
        )
        .bind(key_hash)
        .bind(prefix)
        .bind(tenant_id)
        .bind(&key.id)
        .execute(&mut *change.tx)
        .await
        .map_err(|e| unique_or_db(e, || "key hash".to_owned()))?;
        self.commit_config_change(change).await?;
        key.key_hash = key_hash.to_owned();
        key.prefix = prefix.to_owned();
        Ok(key)
    }
}

/// The key of `tenant_id` named by id or name, read inside a config change
/// (so the write that follows sees the same row); NotFound for another
/// tenant's key.
async fn key_in_change(
    change: &mut super::ConfigChange,
    tenant_id: &str,
    id_or_name: &str,
) -> StoreResult<CallerKey> {
    let row = sqlx::query(&format!(
        "SELECT {KEY_COLUMNS} FROM caller_keys WHERE tenant_id = $1 AND (id = $2 OR name = $2)"
    ))
    .bind(tenant_id)
    .bind(id_or_name)
    .fetch_optional(&mut *change.tx)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("key '{id_or_name}'")))?;
    key_from_row(&row)
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

    #[tokio::test]
    async fn regenerate_replaces_the_hash_only_and_is_tenant_scoped() {
        for t in crate::store::test_backends::test_stores().await {
            let store = t.store.clone();
            let a = store.create_tenant("a").await.unwrap();
            let b = store.create_tenant("b").await.unwrap();
            let new = |name: &str, hash: &str, expires_at_ms| NewCallerKey {
                id: new_id(prefix::CALLER_KEY),
                tenant_id: b.id.clone(),
                name: name.into(),
                prefix: "tg-Old1".into(),
                key_hash: hash.into(),
                expires_at_ms,
                allowed_providers: vec!["prv_1".into(), "prv_2".into()],
            };
            let expires = now_ms() + 3_600_000;
            let k = store
                .create_key(new("ci", &"11".repeat(32), expires))
                .await
                .unwrap();

            // Another tenant cannot reach it, by id or name; nothing changes.
            let v = store.config_version().await.unwrap();
            for r in [k.id.as_str(), "ci"] {
                assert!(matches!(
                    store
                        .regenerate_key(&a.id, r, "tg-Evil", &"22".repeat(32))
                        .await,
                    Err(StoreError::NotFound(_))
                ));
            }
            assert_eq!(store.config_version().await.unwrap(), v);
            assert_eq!(store.list_keys(&b.id).await.unwrap(), vec![k.clone()]);

            let r = store
                .regenerate_key(&b.id, "ci", "tg-New2", &"33".repeat(32))
                .await
                .unwrap();
            assert_eq!(store.config_version().await.unwrap(), v + 1);
            let expected = CallerKey {
                prefix: "tg-New2".into(),
                key_hash: "33".repeat(32),
                ..k.clone()
            };
            assert_eq!(r, expected);
            assert_eq!(store.list_keys(&b.id).await.unwrap(), vec![expected]);
            // The snapshot's key list carries the new hash and not the old.
            let hashes: Vec<String> = store
                .load_config()
                .await
                .unwrap()
                .tenants
                .into_iter()
                .flat_map(|t| t.keys)
                .map(|k| k.key_hash)
                .collect();
            assert_eq!(hashes, vec!["33".repeat(32)]);

            // A hash that is already some key's is refused, nothing changes.
            store
                .create_key(new("other", &"44".repeat(32), 0))
                .await
                .unwrap();
            let v = store.config_version().await.unwrap();
            assert!(matches!(
                store
                    .regenerate_key(&b.id, "ci", "tg-Dup4", &"44".repeat(32))
                    .await,
                Err(StoreError::AlreadyExists(_))
            ));
            assert_eq!(store.config_version().await.unwrap(), v);

            // Revoked and expired keys are refused.
            store.revoke_key(&b.id, "other").await.unwrap();
            let v = store.config_version().await.unwrap();
            let e = store
                .regenerate_key(&b.id, "other", "tg-Rev5", &"55".repeat(32))
                .await
                .unwrap_err();
            assert!(
                matches!(&e, StoreError::InUse(m) if m.contains("revoked")),
                "{e}"
            );
            let short = store
                .create_key(new("short", &"66".repeat(32), now_ms() + 1))
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let v2 = store.config_version().await.unwrap();
            let e = store
                .regenerate_key(&b.id, &short.id, "tg-Exp7", &"77".repeat(32))
                .await
                .unwrap_err();
            assert!(
                matches!(&e, StoreError::InUse(m) if m.contains("expired")),
                "{e}"
            );
            assert_eq!(store.config_version().await.unwrap(), v2);
            assert!(v2 > v);
        }
    }
}
