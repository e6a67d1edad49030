//! Tenants: the unit of isolation. Every other object belongs to one.

use sqlx::any::AnyRow;
use sqlx::Row;
use tollgate_core::ids::{new_id, prefix};
use tollgate_core::time::now_ms;

use super::{to_bool, unique_or_db, Store, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub active: bool,
    pub created_at_ms: i64,
}

pub(super) fn tenant_from_row(row: &AnyRow) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        active: to_bool(row.try_get("active")?),
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

impl Store {
    /// Creates an active tenant. The name must already be validated.
    pub async fn create_tenant(&self, name: &str) -> StoreResult<Tenant> {
        let tenant = Tenant {
            id: new_id(prefix::TENANT),
            name: name.to_owned(),
            active: true,
            created_at_ms: now_ms(),
        };
        let mut change = self.begin_config_change().await?;
        sqlx::query(
            "INSERT INTO tenants (id, name, active, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&tenant.id)
        .bind(&tenant.name)
        .bind(1_i64)
        .bind(tenant.created_at_ms)
        .execute(&mut *change.tx)
        .await
        .map_err(|e| unique_or_db(e, || format!("tenant '{name}'")))?;
        self.commit_config_change(change).await?;
        Ok(tenant)
    }

    /// A tenant by id (`tn_...`) or by name. Names are slugs without '_', so
    /// the two never collide.
    pub async fn get_tenant(&self, id_or_name: &str) -> StoreResult<Tenant> {
        let row = sqlx::query(
            "SELECT id, name, active, created_at_ms FROM tenants WHERE id = $1 OR name = $1",
        )
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => tenant_from_row(&r),
            None => Err(StoreError::NotFound(format!("tenant '{id_or_name}'"))),
        }
    }

    pub async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        sqlx::query("SELECT id, name, active, created_at_ms FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(tenant_from_row)
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_get_list_and_duplicate() {
        for t in crate::store::test_backends::test_stores().await {
            let store = t.store.clone();
            let t = store.create_tenant("acme").await.unwrap();
            assert!(t.id.starts_with("tn_"));
            assert!(t.active);
            assert_eq!(store.get_tenant("acme").await.unwrap(), t);
            assert_eq!(store.get_tenant(&t.id).await.unwrap(), t);
            assert!(matches!(
                store.create_tenant("acme").await,
                Err(StoreError::AlreadyExists(w)) if w == "tenant 'acme'"
            ));
            // The failed create rolled back its version bump.
            assert_eq!(store.config_version().await.unwrap(), 2);
            store.create_tenant("beta").await.unwrap();
            let names: Vec<_> = store
                .list_tenants()
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.name)
                .collect();
            assert_eq!(names, ["acme", "beta"]);
            assert!(matches!(
                store.get_tenant("nope").await,
                Err(StoreError::NotFound(_))
            ));
        }
    }
}
