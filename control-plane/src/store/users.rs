//! Users (operator or tenant-scoped, with a role) and their sign-in sessions.
//! Neither is configuration: writes do not bump the config version.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{unique_or_db, Store, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    /// `None`: an operator user (every tenant).
    pub tenant_id: Option<String>,
    pub email: String,
    pub role: String,
    pub created_at_ms: i64,
    pub disabled_at_ms: i64,
}

/// A user with its password hash, for sign-in only.
#[derive(Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

impl std::fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    pub tenant_id: Option<String>,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub created_at_ms: i64,
}

const USER_COLUMNS: &str = "id, tenant_id, email, role, created_at_ms, disabled_at_ms";

fn user_from_row(row: &AnyRow) -> StoreResult<User> {
    let tenant_id: Option<String> = row.try_get("tenant_id")?;
    Ok(User {
        id: row.try_get("id")?,
        tenant_id: tenant_id.filter(|t| !t.is_empty()),
        email: row.try_get("email")?,
        role: row.try_get("role")?,
        created_at_ms: row.try_get("created_at_ms")?,
        disabled_at_ms: row.try_get("disabled_at_ms")?,
    })
}

impl Store {
    pub async fn create_user(&self, new: NewUser) -> StoreResult<User> {
        sqlx::query(
            "INSERT INTO users (id, tenant_id, email, password_hash, role, created_at_ms, disabled_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, 0)",
        )
        .bind(&new.id)
        .bind(new.tenant_id.clone())
        .bind(&new.email)
        .bind(&new.password_hash)
        .bind(&new.role)
        .bind(new.created_at_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| unique_or_db(e, || format!("user '{}'", new.email)))?;
        Ok(User {
            id: new.id,
            tenant_id: new.tenant_id,
            email: new.email,
            role: new.role,
            created_at_ms: new.created_at_ms,
            disabled_at_ms: 0,
        })
    }

    /// Users of a tenant, or the operator users when `tenant_id` is `None`.
    pub async fn list_users(&self, tenant_id: Option<&str>) -> StoreResult<Vec<User>> {
        let rows = match tenant_id {
            Some(t) => {
                sqlx::query(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY email"
                ))
                .bind(t)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE tenant_id IS NULL ORDER BY email"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(user_from_row).collect()
    }

    /// A user of the given scope by id or email.
    pub async fn get_user(&self, tenant_id: Option<&str>, id_or_email: &str) -> StoreResult<User> {
        self.list_users(tenant_id)
            .await?
            .into_iter()
            .find(|u| u.id == id_or_email || u.email == id_or_email.to_ascii_lowercase())
            .ok_or_else(|| StoreError::NotFound(format!("user '{id_or_email}'")))
    }

    pub async fn user_credentials(&self, email: &str) -> StoreResult<Option<UserCredentials>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(UserCredentials {
                user: user_from_row(&r)?,
                password_hash: r.try_get("password_hash")?,
            })
        })
        .transpose()
    }

    /// Disables a user and ends its sessions.
    pub async fn disable_user(&self, user_id: &str, now_ms: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE users SET disabled_at_ms = $1 WHERE id = $2 AND disabled_at_ms = 0")
            .bind(now_ms)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        super::audit::write_pending_in(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: &str,
        created_at_ms: i64,
        expires_at_ms: i64,
    ) -> StoreResult<()> {
        // Expired sessions are dropped as new ones are made.
        sqlx::query("DELETE FROM sessions WHERE expires_at_ms <= $1")
            .bind(created_at_ms)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(created_at_ms)
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The active user of an unexpired session.
    pub async fn session_user(&self, token_hash: &str, now_ms: i64) -> StoreResult<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.tenant_id, u.email, u.role, u.created_at_ms, u.disabled_at_ms \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at_ms > $2 AND u.disabled_at_ms = 0",
        )
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Records the user who created a caller key.
    pub async fn set_key_creator(&self, key_id: &str, user_id: &str) -> StoreResult<()> {
        sqlx::query("INSERT INTO caller_key_creators (key_id, user_id) VALUES ($1, $2)")
            .bind(key_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user who created a caller key, if a user did.
    pub async fn key_creator(&self, key_id: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT user_id FROM caller_key_creators WHERE key_id = $1")
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("user_id")).transpose()?)
    }

    pub async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::test_support::temp_store;
    use super::*;

    #[tokio::test]
    async fn users_sessions_expiry_and_disable() {
        let (store, _dir) = temp_store().await;
        let t = store.create_tenant("acme").await.unwrap();
        let u = store
            .create_user(NewUser {
                id: "us_1".into(),
                tenant_id: Some(t.id.clone()),
                email: "a@acme.test".into(),
                password_hash: "$argon2id$x".into(),
                role: "owner".into(),
                created_at_ms: 1,
            })
            .await
            .unwrap();
        let op = store
            .create_user(NewUser {
                id: "us_2".into(),
                tenant_id: None,
                email: "op@x.test".into(),
                password_hash: "h".into(),
                role: "admin".into(),
                created_at_ms: 1,
            })
            .await
            .unwrap();
        assert!(matches!(
            store
                .create_user(NewUser {
                    id: "us_3".into(),
                    tenant_id: None,
                    email: "a@acme.test".into(),
                    password_hash: "h".into(),
                    role: "admin".into(),
                    created_at_ms: 1,
                })
                .await,
            Err(StoreError::AlreadyExists(_))
        ));
        assert_eq!(
            store.list_users(Some(&t.id)).await.unwrap(),
            vec![u.clone()]
        );
        assert_eq!(store.list_users(None).await.unwrap(), vec![op]);
        assert!(store.get_user(None, "a@acme.test").await.is_err());
        let creds = store
            .user_credentials("a@acme.test")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(creds.password_hash, "$argon2id$x");
        assert!(!format!("{creds:?}").contains("argon2id"));

        store.create_session("h1", &u.id, 100, 200).await.unwrap();
        assert_eq!(
            store.session_user("h1", 150).await.unwrap(),
            Some(u.clone())
        );
        assert_eq!(
            store.session_user("h1", 200).await.unwrap(),
            None,
            "expired"
        );
        assert_eq!(store.session_user("nope", 150).await.unwrap(), None);
        store.disable_user(&u.id, 160).await.unwrap();
        assert_eq!(store.session_user("h1", 150).await.unwrap(), None);
        store.create_session("h2", &u.id, 100, 200).await.unwrap();
        assert_eq!(
            store.session_user("h2", 150).await.unwrap(),
            None,
            "disabled"
        );
    }
}
