//! Audit events: who changed what, and when (migration 0016).
//!
//! An admin call that changes something is wrapped by `crate::audit` in an
//! [`audit_scope`] carrying the event it will produce. The first
//! configuration transaction the call commits writes that event in the same
//! transaction ([`Store::commit_config_change`] and the few other write
//! transactions of admin calls call [`write_pending_in`]), so a committed
//! change cannot lose its event and a rolled-back change leaves none. Calls
//! whose writes are not transactions of their own (users, sessions, data-plane
//! groups, incidents) get their event right after they succeed.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Store, StoreResult};

/// `outcome` of a call that succeeded.
pub const OUTCOME_OK: &str = "ok";
/// `outcome` of a call that failed after part of its change had committed.
pub const OUTCOME_FAILED: &str = "failed";
/// `outcome` of a refused sign-in (a security event, not a change).
pub const OUTCOME_DENIED: &str = "denied";

/// One row of the audit log. `details` is a JSON object of non-secret fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditEvent {
    pub id: String,
    pub at_ms: i64,
    /// "operator" (the operator token), "user" or "anonymous" (sign-in).
    pub actor_kind: String,
    /// The user id, or "operator-token".
    pub actor_id: String,
    pub actor_email: String,
    /// Empty: a change of the installation, not of one tenant.
    pub tenant_id: String,
    /// e.g. "key.create", "provider.add", "budget.set".
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub details: String,
    pub outcome: String,
    pub request_id: String,
    pub peer: String,
}

/// Which events [`Store::list_audit_events`] returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// `Some("")`: installation-level events only; `None`: every tenant.
    pub tenant_id: Option<String>,
    /// Matches the actor's id or email.
    pub actor: Option<String>,
    pub action_prefix: Option<String>,
    pub since_ms: i64,
    /// 0: no upper bound. Exclusive.
    pub until_ms: i64,
    /// Continue after this (at_ms, id), exclusive.
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

/// The event of the admin call being served, shared between the audit
/// layer and the store's write transactions.
#[derive(Debug)]
pub struct PendingAudit {
    event: Mutex<AuditEvent>,
    written: AtomicBool,
}

impl PendingAudit {
    pub fn new(event: AuditEvent) -> Arc<Self> {
        Arc::new(Self {
            event: Mutex::new(event),
            written: AtomicBool::new(false),
        })
    }

    /// True once a transaction of the call wrote the event (it may still
    /// have rolled back; [`Store::complete_audit_event`] copes).
    pub fn written(&self) -> bool {
        self.written.load(Ordering::SeqCst)
    }

    /// The event as it stands.
    pub fn event(&self) -> AuditEvent {
        self.event.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes the event (the layer adds what the response says).
    pub fn update(&self, f: impl FnOnce(&mut AuditEvent)) {
        f(&mut self.event.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn take_for_write(&self) -> Option<AuditEvent> {
        if self.written.swap(true, Ordering::SeqCst) {
            None
        } else {
            Some(self.event())
        }
    }
}

tokio::task_local! {
    static PENDING: Arc<PendingAudit>;
}

/// Runs `f` (an admin call) with `pending` as the event its first write
/// transaction records.
pub async fn audit_scope<F: Future>(pending: Arc<PendingAudit>, f: F) -> F::Output {
    PENDING.scope(pending, f).await
}

/// Inserts the current call's event in `tx`, once per call; nothing outside
/// an [`audit_scope`].
pub(crate) async fn write_pending_in(tx: &mut Transaction<'static, Any>) -> StoreResult<()> {
    let Some(event) = PENDING.try_with(|p| p.take_for_write()).ok().flatten() else {
        return Ok(());
    };
    insert(&mut **tx, &event).await
}

const COLUMNS: &str = "id, at_ms, actor_kind, actor_id, actor_email, tenant_id, action, \
                       target_kind, target_id, details, outcome, request_id, peer";

async fn insert<'e, E>(exec: E, e: &AuditEvent) -> StoreResult<()>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    sqlx::query(&format!(
        "INSERT INTO audit_events ({COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(&e.id)
    .bind(e.at_ms)
    .bind(&e.actor_kind)
    .bind(&e.actor_id)
    .bind(&e.actor_email)
    .bind(&e.tenant_id)
    .bind(&e.action)
    .bind(&e.target_kind)
    .bind(&e.target_id)
    .bind(&e.details)
    .bind(&e.outcome)
    .bind(&e.request_id)
    .bind(&e.peer)
    .execute(exec)
    .await?;
    Ok(())
}

fn event_from(row: &AnyRow) -> StoreResult<AuditEvent> {
    Ok(AuditEvent {
        id: row.try_get("id")?,
        at_ms: row.try_get("at_ms")?,
        actor_kind: row.try_get("actor_kind")?,
        actor_id: row.try_get("actor_id")?,
        actor_email: row.try_get("actor_email")?,
        tenant_id: row.try_get("tenant_id")?,
        action: row.try_get("action")?,
        target_kind: row.try_get("target_kind")?,
        target_id: row.try_get("target_id")?,
        details: row.try_get("details")?,
        outcome: row.try_get("outcome")?,
        request_id: row.try_get("request_id")?,
        peer: row.try_get("peer")?,
    })
}

impl Store {
    /// Writes an event outside any change (right after a call succeeded, or
    /// a refused sign-in).
    pub async fn insert_audit_event(&self, e: &AuditEvent) -> StoreResult<()> {
        insert(&self.pool, e).await
    }

    /// After the call succeeded: adds what the response told (the created
    /// object's id, its tenant) to the event its transaction wrote, or writes
    /// the whole event when no transaction of the call did.
    pub async fn complete_audit_event(&self, e: &AuditEvent) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE audit_events SET tenant_id = $2, target_id = $3, details = $4, outcome = $5 \
             WHERE id = $1",
        )
        .bind(&e.id)
        .bind(&e.tenant_id)
        .bind(&e.target_id)
        .bind(&e.details)
        .bind(&e.outcome)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            insert(&self.pool, e).await?;
        }
        Ok(())
    }

    /// The call failed after its transaction wrote the event: the change
    /// (or part of it) stands, so the event stays, marked failed.
    pub async fn fail_audit_event(&self, id: &str) -> StoreResult<()> {
        sqlx::query("UPDATE audit_events SET outcome = $2 WHERE id = $1")
            .bind(id)
            .bind(OUTCOME_FAILED)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Events matching `q`, newest first (ties by id, which is time-ordered).
    pub async fn list_audit_events(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        let mut sql = format!("SELECT {COLUMNS} FROM audit_events WHERE at_ms >= $1");
        let mut n = 1;
        // Appends `clause` with each `?` as the next placeholder number (a
        // clause naming one value twice binds it once).
        let mut add = |sql: &mut String, clause: &str| {
            n += 1;
            sql.push_str(&clause.replace('?', &format!("${n}")));
        };
        if q.until_ms > 0 {
            add(&mut sql, " AND at_ms < ?");
        }
        if q.tenant_id.is_some() {
            add(&mut sql, " AND tenant_id = ?");
        }
        if q.actor.is_some() {
            add(&mut sql, " AND (actor_id = ? OR actor_email = ?)");
        }
        if let Some(prefix) = &q.action_prefix {
            let len = prefix.chars().count();
            add(&mut sql, &format!(" AND substr(action, 1, {len}) = ?"));
        }
        if q.before.is_some() {
            add(&mut sql, " AND (at_ms < ? OR (at_ms = ?");
            add(&mut sql, " AND id < ?))");
        }
        add(&mut sql, " ORDER BY at_ms DESC, id DESC LIMIT ?");

        let mut query = sqlx::query(&sql).bind(q.since_ms);
        if q.until_ms > 0 {
            query = query.bind(q.until_ms);
        }
        if let Some(t) = &q.tenant_id {
            query = query.bind(t);
        }
        if let Some(a) = &q.actor {
            query = query.bind(a);
        }
        if let Some(p) = &q.action_prefix {
            query = query.bind(p);
        }
        if let Some((at, id)) = &q.before {
            query = query.bind(*at).bind(id);
        }
        let rows = query.bind(q.limit.max(1)).fetch_all(&self.pool).await?;
        rows.iter().map(event_from).collect()
    }

    /// Deletes at most `batch` events older than `cutoff_ms`; returns how
    /// many went.
    pub async fn delete_audit_events_before(&self, cutoff_ms: i64, batch: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM audit_events WHERE id IN \
             (SELECT id FROM audit_events WHERE at_ms < $1 LIMIT $2)",
        )
        .bind(cutoff_ms)
        .bind(batch)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::store::test_backends::test_stores;

    fn event(id: &str) -> AuditEvent {
        AuditEvent {
            id: id.into(),
            at_ms: 1,
            action: "tenant.create".into(),
            details: "{}".into(),
            outcome: OUTCOME_OK.into(),
            ..Default::default()
        }
    }

    async fn ids(store: &Store) -> Vec<String> {
        let q = AuditQuery {
            limit: 100,
            ..Default::default()
        };
        let events = store.list_audit_events(&q).await.unwrap();
        events.into_iter().map(|e| e.id).collect()
    }

    #[tokio::test]
    async fn the_event_commits_with_the_change_and_only_once() {
        for t in test_stores().await {
            let s = &t.store;
            // A change that rolls back (the name exists) leaves no event.
            s.create_tenant("acme").await.unwrap();
            let pending = PendingAudit::new(event("ae_1"));
            let err = audit_scope(pending.clone(), s.create_tenant("acme")).await;
            assert!(err.is_err());
            assert!(!pending.written(), "{}", t.backend);
            assert!(ids(s).await.is_empty(), "{}", t.backend);

            // Two committed changes in one call: one event, written by the
            // first; completing it adds to that row instead of a second one.
            let pending = PendingAudit::new(event("ae_2"));
            audit_scope(pending.clone(), async {
                s.create_tenant("beta").await.unwrap();
                s.create_tenant("gamma").await.unwrap();
            })
            .await;
            assert!(pending.written());
            assert_eq!(ids(s).await, ["ae_2"], "{}", t.backend);
            pending.update(|e| e.target_id = "tn_beta".into());
            s.complete_audit_event(&pending.event()).await.unwrap();
            let stored = s
                .list_audit_events(&AuditQuery {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(stored.len(), 1);
            assert_eq!(stored[0].target_id, "tn_beta");
            s.fail_audit_event("ae_2").await.unwrap();
            assert_eq!(ids(s).await, ["ae_2"]);

            // Outside a scope nothing is recorded; completing an event no
            // transaction wrote inserts it.
            s.create_tenant("delta").await.unwrap();
            assert_eq!(ids(s).await.len(), 1);
            s.complete_audit_event(&event("ae_3")).await.unwrap();
            assert_eq!(ids(s).await, ["ae_3", "ae_2"]);
        }
    }

    #[tokio::test]
    async fn filters_and_pages() {
        for t in test_stores().await {
            let s = &t.store;
            let rows = [
                ("ae_1", 10, "tn_a", "key.create", "us_1", "ann@a.test"),
                ("ae_2", 20, "tn_b", "key.revoke", "us_2", "bob@b.test"),
                ("ae_3", 20, "tn_a", "provider.add", "operator-token", ""),
                ("ae_4", 30, "", "tenant.create", "operator-token", ""),
            ];
            for (id, at, tenant, action, actor, email) in rows {
                let mut e = event(id);
                e.at_ms = at;
                e.tenant_id = tenant.into();
                e.action = action.into();
                e.actor_id = actor.into();
                e.actor_email = email.into();
                s.insert_audit_event(&e).await.unwrap();
            }
            let q = |f: fn(&mut AuditQuery)| {
                let mut q = AuditQuery {
                    limit: 10,
                    ..Default::default()
                };
                f(&mut q);
                q
            };
            let run = |q: AuditQuery| async move {
                let events = s.list_audit_events(&q).await.unwrap();
                events.into_iter().map(|e| e.id).collect::<Vec<_>>()
            };
            assert_eq!(run(q(|_| {})).await, ["ae_4", "ae_3", "ae_2", "ae_1"]);
            assert_eq!(
                run(q(|q| q.tenant_id = Some("tn_a".into()))).await,
                ["ae_3", "ae_1"]
            );
            assert_eq!(
                run(q(|q| q.tenant_id = Some(String::new()))).await,
                ["ae_4"]
            );
            assert_eq!(
                run(q(|q| q.action_prefix = Some("key.".into()))).await,
                ["ae_2", "ae_1"]
            );
            assert_eq!(
                run(q(|q| q.actor = Some("bob@b.test".into()))).await,
                ["ae_2"]
            );
            assert_eq!(
                run(q(|q| q.actor = Some("operator-token".into()))).await,
                ["ae_4", "ae_3"]
            );
            assert_eq!(
                run(q(|q| {
                    q.since_ms = 20;
                    q.until_ms = 30;
                }))
                .await,
                ["ae_3", "ae_2"]
            );
            // Pages of one, continuing after (at_ms, id): the same order.
            let mut seen = Vec::new();
            let mut before = None;
            loop {
                let page = s
                    .list_audit_events(&AuditQuery {
                        limit: 1,
                        before: before.clone(),
                        tenant_id: None,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                let Some(e) = page.first() else { break };
                before = Some((e.at_ms, e.id.clone()));
                seen.push(e.id.clone());
            }
            assert_eq!(seen, ["ae_4", "ae_3", "ae_2", "ae_1"], "{}", t.backend);
        }
    }
}
