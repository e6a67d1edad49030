//! Data-plane groups and their registration tokens. Only a token's SHA-256
//! is stored; the token is returned once, at creation.

use sqlx::any::AnyRow;
use sqlx::Row;
use tollgate_core::ids::new_id;
use tollgate_core::time::now_ms;

use super::{unique_or_db, Store, StoreError, StoreResult};

/// Group ids start with this.
pub const DP_GROUP_PREFIX: &str = "dpg";
/// Registration-token ids start with this.
pub const DP_TOKEN_ID_PREFIX: &str = "dpt";
/// Registration tokens start with this (the built-in shared token with
/// `tgdp-`).
pub const DP_REGISTRATION_TOKEN_PREFIX: &str = "tgdr-";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpGroup {
    pub id: String,
    pub name: String,
    /// `None`: shared (every tenant).
    pub tenant_id: Option<String>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpToken {
    pub id: String,
    pub group_id: String,
    pub name: String,
    pub last4: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: i64,
}

/// A token that may be used, with what it grants; what the sync port's
/// authentication table is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveDpToken {
    pub token_id: String,
    pub token_hash: String,
    pub expires_at_ms: i64,
    pub group: DpGroup,
}

/// Lowercase hex SHA-256 of a registration token: the only form stored.
pub fn dp_token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn group_from(row: &AnyRow) -> StoreResult<DpGroup> {
    let tenant: String = row.try_get("tenant_id")?;
    Ok(DpGroup {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        tenant_id: (!tenant.is_empty()).then_some(tenant),
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

fn token_from(row: &AnyRow) -> StoreResult<DpToken> {
    Ok(DpToken {
        id: row.try_get("id")?,
        group_id: row.try_get("group_id")?,
        name: row.try_get("name")?,
        last4: row.try_get("last4")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

impl Store {
    /// Creates a group; `tenant_id` `None` makes it shared.
    pub async fn create_dp_group(
        &self,
        name: &str,
        tenant_id: Option<&str>,
    ) -> StoreResult<DpGroup> {
        let group = DpGroup {
            id: new_id(DP_GROUP_PREFIX),
            name: name.to_owned(),
            tenant_id: tenant_id.map(str::to_owned),
            created_at_ms: now_ms(),
        };
        sqlx::query(
            "INSERT INTO dp_groups (id, name, tenant_id, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&group.id)
        .bind(&group.name)
        .bind(tenant_id.unwrap_or(""))
        .bind(group.created_at_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| unique_or_db(e, || format!("data-plane group '{name}'")))?;
        Ok(group)
    }

    /// Groups by name; with `tenant_id`, only that tenant's.
    pub async fn list_dp_groups(&self, tenant_id: Option<&str>) -> StoreResult<Vec<DpGroup>> {
        let rows = match tenant_id {
            Some(t) => {
                sqlx::query(
                    "SELECT id, name, tenant_id, created_at_ms FROM dp_groups \
                     WHERE tenant_id = $1 ORDER BY name",
                )
                .bind(t)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT id, name, tenant_id, created_at_ms FROM dp_groups ORDER BY name",
                )
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(group_from).collect()
    }

    /// A group by id or name; with `tenant_id`, only if scoped to it (else
    /// NotFound, the same answer as for a group that does not exist).
    pub async fn get_dp_group(
        &self,
        reference: &str,
        tenant_id: Option<&str>,
    ) -> StoreResult<DpGroup> {
        let row = sqlx::query(
            "SELECT id, name, tenant_id, created_at_ms FROM dp_groups \
             WHERE (id = $1 OR name = $1) AND ($2 = '' OR tenant_id = $2)",
        )
        .bind(reference)
        .bind(tenant_id.unwrap_or(""))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => group_from(&r),
            None => Err(StoreError::NotFound(format!(
                "data-plane group '{reference}'"
            ))),
        }
    }

    /// Creates a registration token for a group; returns it with the token
    /// itself (shown once).
    pub async fn create_dp_token(
        &self,
        group_id: &str,
        name: &str,
        expires_at_ms: i64,
    ) -> StoreResult<(DpToken, String)> {
        let secret = crate::secrets_files::generate_token(DP_REGISTRATION_TOKEN_PREFIX);
        let token = DpToken {
            id: new_id(DP_TOKEN_ID_PREFIX),
            group_id: group_id.to_owned(),
            name: name.to_owned(),
            last4: secret[secret.len().saturating_sub(4)..].to_owned(),
            created_at_ms: now_ms(),
            expires_at_ms: expires_at_ms.max(0),
            revoked_at_ms: 0,
        };
        sqlx::query(
            "INSERT INTO dp_tokens (id, group_id, name, token_hash, last4, created_at_ms, \
             expires_at_ms, revoked_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 0)",
        )
        .bind(&token.id)
        .bind(&token.group_id)
        .bind(&token.name)
        .bind(dp_token_hash(&secret))
        .bind(&token.last4)
        .bind(token.created_at_ms)
        .bind(token.expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok((token, secret))
    }

    /// Tokens of a group, newest first.
    pub async fn list_dp_tokens(&self, group_id: &str) -> StoreResult<Vec<DpToken>> {
        let rows = sqlx::query(
            "SELECT id, group_id, name, last4, created_at_ms, expires_at_ms, revoked_at_ms \
             FROM dp_tokens WHERE group_id = $1 ORDER BY created_at_ms DESC, id DESC",
        )
        .bind(group_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from).collect()
    }

    /// A token by id; with `tenant_id`, only if its group is scoped to it.
    pub async fn get_dp_token(
        &self,
        token_id: &str,
        tenant_id: Option<&str>,
    ) -> StoreResult<DpToken> {
        let row = sqlx::query(
            "SELECT t.id, t.group_id, t.name, t.last4, t.created_at_ms, t.expires_at_ms, \
             t.revoked_at_ms FROM dp_tokens t JOIN dp_groups g ON g.id = t.group_id \
             WHERE t.id = $1 AND ($2 = '' OR g.tenant_id = $2)",
        )
        .bind(token_id)
        .bind(tenant_id.unwrap_or(""))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => token_from(&r),
            None => Err(StoreError::NotFound(format!(
                "data-plane token '{token_id}'"
            ))),
        }
    }

    /// Revokes a token (idempotent: a revoked token keeps its first time).
    pub async fn revoke_dp_token(
        &self,
        token_id: &str,
        tenant_id: Option<&str>,
    ) -> StoreResult<DpToken> {
        // Checks the scope first: a tenant can only revoke its own tokens.
        self.get_dp_token(token_id, tenant_id).await?;
        sqlx::query("UPDATE dp_tokens SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms = 0")
            .bind(now_ms())
            .bind(token_id)
            .execute(&self.pool)
            .await?;
        self.get_dp_token(token_id, tenant_id).await
    }

    /// Every token neither revoked nor expired at `now`, with its group.
    pub async fn active_dp_tokens(&self, now: i64) -> StoreResult<Vec<ActiveDpToken>> {
        let rows = sqlx::query(
            "SELECT t.id AS token_id, t.token_hash, t.expires_at_ms, g.id, g.name, g.tenant_id, \
             g.created_at_ms FROM dp_tokens t JOIN dp_groups g ON g.id = t.group_id \
             WHERE t.revoked_at_ms = 0 AND (t.expires_at_ms = 0 OR t.expires_at_ms > $1)",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ActiveDpToken {
                    token_id: r.try_get("token_id")?,
                    token_hash: r.try_get("token_hash")?,
                    expires_at_ms: r.try_get("expires_at_ms")?,
                    group: group_from(r)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::test_backends::test_stores;
    use super::*;

    /// On every backend (SQLite, and Postgres when configured).
    #[tokio::test]
    async fn tokens_are_hashed_scoped_and_revocable() {
        for t in test_stores().await {
            eprintln!("backend: {}", t.backend);
            tokens_case(&t.store).await;
        }
    }

    async fn tokens_case(store: &Store) {
        let a = store.create_tenant("a").await.unwrap();
        let b = store.create_tenant("b").await.unwrap();
        let shared = store.create_dp_group("cloud", None).await.unwrap();
        let ga = store
            .create_dp_group("a-onprem", Some(&a.id))
            .await
            .unwrap();
        assert!(matches!(
            store.create_dp_group("cloud", None).await,
            Err(StoreError::AlreadyExists(_))
        ));
        assert_eq!(store.list_dp_groups(None).await.unwrap().len(), 2);
        assert_eq!(
            store.list_dp_groups(Some(&a.id)).await.unwrap(),
            vec![ga.clone()]
        );
        assert!(store.list_dp_groups(Some(&b.id)).await.unwrap().is_empty());
        // Scoped lookups: B cannot see A's group, nor the shared one.
        assert_eq!(
            store.get_dp_group("a-onprem", Some(&a.id)).await.unwrap(),
            ga
        );
        assert!(store.get_dp_group("a-onprem", Some(&b.id)).await.is_err());
        assert!(store.get_dp_group(&shared.id, Some(&a.id)).await.is_err());

        let (t, secret) = store.create_dp_token(&ga.id, "rack-1", 0).await.unwrap();
        assert!(secret.starts_with(DP_REGISTRATION_TOKEN_PREFIX));
        assert!(secret.ends_with(&t.last4));
        let (_expired, _) = store.create_dp_token(&ga.id, "old", 1).await.unwrap();
        let active = store.active_dp_tokens(now_ms()).await.unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].token_hash, dp_token_hash(&secret));
        assert_eq!(active[0].group.tenant_id.as_deref(), Some(a.id.as_str()));
        // The secret itself is nowhere in the table.
        let n: i64 =
            sqlx::query("SELECT COUNT(*) FROM dp_tokens WHERE token_hash = $1 OR name = $1")
                .bind(&secret)
                .fetch_one(store.pool())
                .await
                .unwrap()
                .try_get(0)
                .unwrap();
        assert_eq!(n, 0);

        assert!(store.revoke_dp_token(&t.id, Some(&b.id)).await.is_err());
        assert!(!store.active_dp_tokens(now_ms()).await.unwrap().is_empty());
        let revoked = store.revoke_dp_token(&t.id, Some(&a.id)).await.unwrap();
        assert!(revoked.revoked_at_ms > 0);
        assert!(store.active_dp_tokens(now_ms()).await.unwrap().is_empty());
        assert_eq!(store.list_dp_tokens(&ga.id).await.unwrap().len(), 2);
    }
}
