//! Master key rotation: every stored provider credential re-encrypted under
//! a new key-encryption key in one transaction. Each ciphertext names the
//! KEK it was sealed with (`tgenc1:<kek id>:…`, see `crypto.rs`), so a
//! rotation interrupted or repeated is safe: blobs already under the new
//! key are left alone, and a blob under neither key stops the rotation
//! before anything is written.

use sqlx::Row;

use super::{Store, StoreError};
use crate::crypto::{self, CryptoError, KeyEncryptionKey};

/// Why a rotation stopped (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A credential does not open with the current key.
    #[error("provider {provider}: {source}")]
    Crypto {
        provider: String,
        source: CryptoError,
    },
}

impl From<sqlx::Error> for RotationError {
    fn from(e: sqlx::Error) -> Self {
        RotationError::Store(StoreError::Db(e))
    }
}

/// What a rotation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Credentials re-encrypted under the new key.
    pub rotated: usize,
    /// Credentials already under the new key.
    pub already: usize,
    /// Providers without a credential.
    pub empty: usize,
}

/// The KEK id a blob names (`tgenc1:<id>:…`).
pub fn sealed_key_id(blob: &str) -> Option<&str> {
    let mut parts = blob.splitn(3, ':');
    parts.next()?;
    parts.next()
}

impl Store {
    /// Re-encrypts every provider credential from `current` to `new` in one
    /// transaction: all or nothing. The snapshot pushed to data planes does
    /// not change (same clear keys), so no config version is bumped.
    pub async fn rotate_master_key(
        &self,
        current: &dyn KeyEncryptionKey,
        new: &dyn KeyEncryptionKey,
    ) -> Result<RotationReport, RotationError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("SELECT id, api_key_ciphertext FROM providers ORDER BY id")
            .fetch_all(&mut *tx)
            .await?;
        let mut report = RotationReport::default();
        for row in rows {
            let id: String = row.try_get(0)?;
            let blob: String = row.try_get(1)?;
            if blob.is_empty() {
                report.empty += 1;
                continue;
            }
            if sealed_key_id(&blob) == Some(new.key_id()) {
                report.already += 1;
                continue;
            }
            let crypto_err = |source| RotationError::Crypto {
                provider: id.clone(),
                source,
            };
            let clear = crypto::open(current, &blob, &id)
                .await
                .map_err(crypto_err)?;
            let sealed = crypto::seal(new, clear.expose(), &id)
                .await
                .map_err(crypto_err)?;
            sqlx::query("UPDATE providers SET api_key_ciphertext = $1 WHERE id = $2")
                .bind(&sealed)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            report.rotated += 1;
        }
        tx.commit().await?;
        Ok(report)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::crypto::{LocalKek, MasterKey};
    use crate::store::providers::NewProvider;
    use tollgate_core::ids::{new_id, prefix};

    async fn add(store: &Store, tenant: &str, name: &str, kek: &LocalKek, key: &str) -> String {
        let id = new_id(prefix::PROVIDER);
        let api_key_ciphertext = if key.is_empty() {
            String::new()
        } else {
            crypto::seal(kek, key, &id).await.unwrap()
        };
        store
            .add_provider(NewProvider {
                id: id.clone(),
                tenant_id: tenant.into(),
                name: name.into(),
                kind: "openai".into(),
                base_url: "https://x.example/v1".into(),
                api_key_ciphertext,
                key_fingerprint: String::new(),
                key_last4: String::new(),
                settings: BTreeMap::new(),
            })
            .await
            .unwrap();
        id
    }

    async fn blob(store: &Store, id: &str) -> String {
        sqlx::query("SELECT api_key_ciphertext FROM providers WHERE id = $1")
            .bind(id)
            .fetch_one(&store.pool)
            .await
            .unwrap()
            .try_get(0)
            .unwrap()
    }

    #[tokio::test]
    async fn rotation_reencrypts_every_credential_all_or_nothing() {
        for t in crate::store::test_backends::test_stores().await {
            let store = t.store.clone();
            let old = LocalKek::new(&MasterKey::generate()).unwrap();
            let new = LocalKek::new(&MasterKey::generate()).unwrap();
            let a = store.create_tenant("a").await.unwrap();
            let b = store.create_tenant("b").await.unwrap();
            let p1 = add(&store, &a.id, "p1", &old, "sk-one-1111").await;
            let p2 = add(&store, &b.id, "p2", &old, "sk-two-2222").await;
            let p3 = add(&store, &b.id, "p3", &old, "").await;

            // A wrong "current" key changes nothing.
            let stranger = LocalKek::new(&MasterKey::generate()).unwrap();
            let before = blob(&store, &p1).await;
            let err = store.rotate_master_key(&stranger, &new).await.unwrap_err();
            assert!(matches!(err, RotationError::Crypto { .. }), "{}", t.backend);
            assert_eq!(blob(&store, &p1).await, before);
            assert!(!err.to_string().contains("sk-one"));

            let report = store.rotate_master_key(&old, &new).await.unwrap();
            assert_eq!(
                report,
                RotationReport {
                    rotated: 2,
                    already: 0,
                    empty: 1
                },
                "{}",
                t.backend
            );
            for (id, clear) in [(&p1, "sk-one-1111"), (&p2, "sk-two-2222")] {
                let b = blob(&store, id).await;
                assert_eq!(sealed_key_id(&b), Some(new.key_id()));
                assert_eq!(crypto::open(&new, &b, id).await.unwrap().expose(), clear);
                assert!(crypto::open(&old, &b, id).await.is_err());
            }
            assert_eq!(blob(&store, &p3).await, "");
            // Repeating it (say after a crash before the key file moved)
            // is a no-op.
            let again = store.rotate_master_key(&old, &new).await.unwrap();
            assert_eq!((again.rotated, again.already), (0, 2));
        }
    }
}
