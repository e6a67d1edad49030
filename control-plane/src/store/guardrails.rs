//! Guardrail policies and their attachments (tenant, key or model). Every
//! query is filtered by tenant.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::Row;
use tollgate_core::time::now_ms;

use super::{unique_or_db, Store, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardrail {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub kind: String,
    pub action: String,
    pub direction: String,
    pub settings: String,
    pub created_at_ms: i64,
    pub attachments: Vec<GuardrailAttachment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardrailAttachment {
    /// `tenant`, `key` or `model`.
    pub scope: String,
    pub target_id: String,
    /// Name of the key or model (the tenant's name for scope tenant); empty
    /// when the target no longer exists.
    pub target_name: String,
}

#[derive(Debug, Clone)]
pub struct NewGuardrail {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub kind: String,
    pub action: String,
    pub direction: String,
    pub settings: String,
}

const COLUMNS: &str = "id, tenant_id, name, kind, action, direction, settings, created_at_ms";

fn guardrail_from_row(row: &AnyRow) -> StoreResult<Guardrail> {
    Ok(Guardrail {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        action: row.try_get("action")?,
        direction: row.try_get("direction")?,
        settings: row.try_get("settings")?,
        created_at_ms: row.try_get("created_at_ms")?,
        attachments: Vec::new(),
    })
}

/// Attachments with the names of their targets, for all guardrails of the
/// selected tenants (`tenant_id` None: all tenants, for snapshots).
const ATTACHMENT_SELECT: &str = "SELECT a.guardrail_id, a.tenant_id, a.scope, a.target_id, \
     COALESCE(k.name, m.name, t.name, '') AS target_name \
     FROM guardrail_attachments a \
     LEFT JOIN caller_keys k ON a.scope = 'key' AND k.id = a.target_id AND k.tenant_id = a.tenant_id \
     LEFT JOIN models m ON a.scope = 'model' AND m.id = a.target_id AND m.tenant_id = a.tenant_id \
     LEFT JOIN tenants t ON a.scope = 'tenant' AND t.id = a.target_id";

/// (guardrail id, attachment) rows.
fn attachment_from_row(row: &AnyRow) -> StoreResult<(String, GuardrailAttachment)> {
    Ok((
        row.try_get("guardrail_id")?,
        GuardrailAttachment {
            scope: row.try_get("scope")?,
            target_id: row.try_get("target_id")?,
            target_name: row.try_get("target_name")?,
        },
    ))
}

impl Store {
    pub async fn create_guardrail(&self, new: NewGuardrail) -> StoreResult<Guardrail> {
        let created_at_ms = now_ms();
        let mut change = self.begin_config_change().await?;
        sqlx::query(&format!(
            "INSERT INTO guardrails ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&new.id)
        .bind(&new.tenant_id)
        .bind(&new.name)
        .bind(&new.kind)
        .bind(&new.action)
        .bind(&new.direction)
        .bind(&new.settings)
        .bind(created_at_ms)
        .execute(&mut *change.tx)
        .await
        .map_err(|e| unique_or_db(e, || format!("guardrail '{}'", new.name)))?;
        self.commit_config_change(change).await?;
        Ok(Guardrail {
            id: new.id,
            tenant_id: new.tenant_id,
            name: new.name,
            kind: new.kind,
            action: new.action,
            direction: new.direction,
            settings: new.settings,
            created_at_ms,
            attachments: Vec::new(),
        })
    }

    /// The guardrails of one tenant with their attachments, by name.
    pub async fn list_guardrails(&self, tenant_id: &str) -> StoreResult<Vec<Guardrail>> {
        let mut guardrails = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM guardrails WHERE tenant_id = $1 ORDER BY name"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(guardrail_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
        let attachments = sqlx::query(&format!(
            "{ATTACHMENT_SELECT} WHERE a.tenant_id = $1 ORDER BY a.created_at_ms, a.scope, a.target_id"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(attachment_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
        attach(&mut guardrails, attachments);
        Ok(guardrails)
    }

    /// Every guardrail of every tenant (see [`all_guardrails`]).
    #[cfg(test)]
    pub async fn all_guardrails(&self) -> StoreResult<Vec<Guardrail>> {
        let mut conn = self.pool.acquire().await?;
        all_guardrails(&mut conn).await
    }

    async fn guardrail_id(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        tenant_id: &str,
        id_or_name: &str,
    ) -> StoreResult<String> {
        let row = sqlx::query(
            "SELECT id FROM guardrails WHERE tenant_id = $1 AND (id = $2 OR name = $2)",
        )
        .bind(tenant_id)
        .bind(id_or_name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("guardrail '{id_or_name}'")))?;
        Ok(row.try_get("id")?)
    }

    pub async fn delete_guardrail(&self, tenant_id: &str, id_or_name: &str) -> StoreResult<()> {
        let mut change = self.begin_config_change().await?;
        let id = self
            .guardrail_id(&mut change.tx, tenant_id, id_or_name)
            .await?;
        sqlx::query("DELETE FROM guardrail_attachments WHERE tenant_id = $1 AND guardrail_id = $2")
            .bind(tenant_id)
            .bind(&id)
            .execute(&mut *change.tx)
            .await?;
        sqlx::query("DELETE FROM guardrails WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(&id)
            .execute(&mut *change.tx)
            .await?;
        self.commit_config_change(change).await?;
        Ok(())
    }

    /// Resolves the target of an attachment within the tenant: the tenant
    /// itself, one of its (not revoked) keys or one of its models.
    async fn attachment_target(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        tenant_id: &str,
        scope: &str,
        target: &str,
    ) -> StoreResult<String> {
        let sql = match scope {
            "tenant" => return Ok(tenant_id.to_string()),
            "key" => "SELECT id FROM caller_keys WHERE tenant_id = $1 AND (id = $2 OR name = $2) AND revoked_at_ms = 0",
            "model" => "SELECT id FROM models WHERE tenant_id = $1 AND (id = $2 OR name = $2)",
            other => {
                return Err(StoreError::Invalid(format!(
                    "unknown scope {other:?} (expected tenant, key or model)"
                )))
            }
        };
        let row = sqlx::query(sql)
            .bind(tenant_id)
            .bind(target)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("{scope} '{target}'")))?;
        Ok(row.try_get("id")?)
    }

    /// Attaches a guardrail; attaching it again to the same target changes
    /// nothing.
    pub async fn attach_guardrail(
        &self,
        tenant_id: &str,
        guardrail: &str,
        scope: &str,
        target: &str,
    ) -> StoreResult<()> {
        let mut change = self.begin_config_change().await?;
        let id = self
            .guardrail_id(&mut change.tx, tenant_id, guardrail)
            .await?;
        let target_id = self
            .attachment_target(&mut change.tx, tenant_id, scope, target)
            .await?;
        let exists = sqlx::query(
            "SELECT guardrail_id FROM guardrail_attachments WHERE guardrail_id = $1 AND scope = $2 AND target_id = $3",
        )
        .bind(&id)
        .bind(scope)
        .bind(&target_id)
        .fetch_optional(&mut *change.tx)
        .await?
        .is_some();
        if exists {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO guardrail_attachments (guardrail_id, tenant_id, scope, target_id, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(scope)
        .bind(&target_id)
        .bind(now_ms())
        .execute(&mut *change.tx)
        .await?;
        self.commit_config_change(change).await?;
        Ok(())
    }

    pub async fn detach_guardrail(
        &self,
        tenant_id: &str,
        guardrail: &str,
        scope: &str,
        target: &str,
    ) -> StoreResult<()> {
        let mut change = self.begin_config_change().await?;
        let id = self
            .guardrail_id(&mut change.tx, tenant_id, guardrail)
            .await?;
        // A key revoked or a model deleted since: detach by the raw id too.
        let target_id = match self
            .attachment_target(&mut change.tx, tenant_id, scope, target)
            .await
        {
            Ok(t) => t,
            Err(StoreError::NotFound(_)) => target.to_string(),
            Err(e) => return Err(e),
        };
        let done = sqlx::query(
            "DELETE FROM guardrail_attachments WHERE tenant_id = $1 AND guardrail_id = $2 AND scope = $3 AND target_id = $4",
        )
        .bind(tenant_id)
        .bind(&id)
        .bind(scope)
        .bind(&target_id)
        .execute(&mut *change.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "attachment of guardrail '{guardrail}' to {scope} '{target}'"
            )));
        }
        self.commit_config_change(change).await?;
        Ok(())
    }

    /// One guardrail of a tenant with its attachments.
    pub async fn get_guardrail(&self, tenant_id: &str, id_or_name: &str) -> StoreResult<Guardrail> {
        self.list_guardrails(tenant_id)
            .await?
            .into_iter()
            .find(|g| g.id == id_or_name || g.name == id_or_name)
            .ok_or_else(|| StoreError::NotFound(format!("guardrail '{id_or_name}'")))
    }
}

/// Every guardrail of every tenant, with attachments to targets that still
/// exist (a deleted model's or a revoked key's attachment is left out of
/// snapshots). Runs inside the snapshot's read transaction.
pub(super) async fn all_guardrails(conn: &mut sqlx::AnyConnection) -> StoreResult<Vec<Guardrail>> {
    let mut guardrails = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM guardrails ORDER BY tenant_id, name"
    ))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(guardrail_from_row)
    .collect::<StoreResult<Vec<_>>>()?;
    let attachments = sqlx::query(&format!(
        "{ATTACHMENT_SELECT} WHERE (a.scope <> 'key' OR k.revoked_at_ms = 0) \
         ORDER BY a.created_at_ms, a.scope, a.target_id"
    ))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(attachment_from_row)
    .collect::<StoreResult<Vec<_>>>()?
    .into_iter()
    .filter(|(_, a)| !a.target_name.is_empty())
    .collect();
    attach(&mut guardrails, attachments);
    Ok(guardrails)
}

fn attach(guardrails: &mut [Guardrail], attachments: Vec<(String, GuardrailAttachment)>) {
    let mut by_id: HashMap<String, Vec<GuardrailAttachment>> = HashMap::new();
    for (id, a) in attachments {
        by_id.entry(id).or_default().push(a);
    }
    for g in guardrails {
        g.attachments = by_id.remove(&g.id).unwrap_or_default();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::test_support::temp_store;
    use super::*;
    use tollgate_core::ids::{new_id, prefix};

    fn new(tenant_id: &str, name: &str) -> NewGuardrail {
        NewGuardrail {
            id: new_id(prefix::GUARDRAIL),
            tenant_id: tenant_id.into(),
            name: name.into(),
            kind: "keyword".into(),
            action: "block".into(),
            direction: "input".into(),
            settings: r#"{"words":["x"]}"#.into(),
        }
    }

    #[tokio::test]
    async fn attachments_are_tenant_scoped() {
        let (store, _dir) = temp_store().await;
        let a = store.create_tenant("a").await.unwrap();
        let b = store.create_tenant("b").await.unwrap();
        let g = store.create_guardrail(new(&a.id, "deny")).await.unwrap();
        store.create_guardrail(new(&b.id, "deny")).await.unwrap();
        // Tenant b cannot see, attach or delete tenant a's guardrail by id.
        assert!(matches!(
            store.attach_guardrail(&b.id, &g.id, "tenant", "").await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.delete_guardrail(&b.id, &g.id).await,
            Err(StoreError::NotFound(_))
        ));
        store
            .attach_guardrail(&a.id, "deny", "tenant", "")
            .await
            .unwrap();
        let v = store.config_version().await.unwrap();
        store
            .attach_guardrail(&a.id, "deny", "tenant", "")
            .await
            .unwrap();
        assert_eq!(store.config_version().await.unwrap(), v, "idempotent");
        let listed = store.list_guardrails(&a.id).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            listed[0].attachments,
            vec![GuardrailAttachment {
                scope: "tenant".into(),
                target_id: a.id.clone(),
                target_name: "a".into()
            }]
        );
        assert!(store.list_guardrails(&b.id).await.unwrap()[0]
            .attachments
            .is_empty());
        assert!(matches!(
            store.attach_guardrail(&a.id, "deny", "model", "nope").await,
            Err(StoreError::NotFound(_))
        ));
        store
            .detach_guardrail(&a.id, "deny", "tenant", "")
            .await
            .unwrap();
        assert!(store.all_guardrails().await.unwrap()[0]
            .attachments
            .is_empty());
        store.delete_guardrail(&a.id, "deny").await.unwrap();
        assert!(store.list_guardrails(&a.id).await.unwrap().is_empty());
    }
}
