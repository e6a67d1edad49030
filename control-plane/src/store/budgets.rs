//! Budgets: a tenant's spend per day/week/month. The hard limit caps lease
//! grants (so it is enforced by the same mechanism as the balance); the soft
//! threshold records one alert per period when usage charges cross it.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use tollgate_core::budget::{period_start_ms, Period};
use tollgate_core::ids::new_id;
use tollgate_core::time::now_ms;

use super::{Store, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub id: String,
    pub tenant_id: String,
    /// '' : the tenant's budget; else a budget of this caller key alone.
    pub key_id: String,
    pub period: String,
    pub amount_micros: i64,
    /// 0: no soft threshold.
    pub soft_micros: i64,
    pub utc_offset_min: i32,
    /// Where alerts are posted; empty: admin API only.
    pub webhook_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetAlert {
    pub id: String,
    pub budget_id: String,
    pub tenant_id: String,
    /// '' : a tenant budget's alert.
    pub key_id: String,
    pub period_start_ms: i64,
    pub threshold_micros: i64,
    pub spent_micros: i64,
    pub created_at_ms: i64,
    pub delivered_at_ms: i64,
    /// Of its budget, for delivery.
    pub webhook_url: String,
    pub period: String,
}

const BUDGET_COLUMNS: &str =
    "id, tenant_id, '' AS key_id, period, amount_micros, soft_micros, utc_offset_min, webhook_url";
const KEY_BUDGET_COLUMNS: &str =
    "id, tenant_id, key_id, period, amount_micros, soft_micros, utc_offset_min, webhook_url";

fn budget_from_row(row: &AnyRow) -> StoreResult<Budget> {
    let offset: i64 = row.try_get("utc_offset_min")?;
    Ok(Budget {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        key_id: row.try_get("key_id")?,
        period: row.try_get("period")?,
        amount_micros: row.try_get("amount_micros")?,
        soft_micros: row.try_get("soft_micros")?,
        utc_offset_min: i32::try_from(offset).unwrap_or(0),
        webhook_url: row.try_get("webhook_url")?,
    })
}

impl Budget {
    fn period_start(&self, now: i64) -> i64 {
        let period = Period::parse(&self.period).unwrap_or(Period::Month);
        period_start_ms(period, now, self.utc_offset_min)
    }
}

/// The budgets `query` selects (budget columns, one `$1` bound to `id`).
async fn select_budgets(
    tx: &mut Transaction<'static, Any>,
    query: &str,
    id: &str,
) -> StoreResult<Vec<Budget>> {
    sqlx::query(query)
        .bind(id)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(budget_from_row)
        .collect()
}

async fn budgets_in(
    tx: &mut Transaction<'static, Any>,
    tenant_id: &str,
) -> StoreResult<Vec<Budget>> {
    let q = format!("SELECT {BUDGET_COLUMNS} FROM budgets WHERE tenant_id = $1");
    select_budgets(tx, &q, tenant_id).await
}

/// Usage charged to a tenant since `since_ms` (positive micro-dollars).
async fn spent_since(
    tx: &mut Transaction<'static, Any>,
    tenant_id: &str,
    since_ms: i64,
) -> StoreResult<i64> {
    let charged: i64 = sqlx::query(
        "SELECT CAST(COALESCE(SUM(amount_micros), 0) AS BIGINT) FROM ledger_entries \
         WHERE tenant_id = $1 AND kind = 'usage' AND created_at_ms >= $2",
    )
    .bind(tenant_id)
    .bind(since_ms)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    Ok(-charged)
}

/// What the budgets still allow to be granted: for each, amount − spent in
/// the current period − `leased`; `None` without budgets.
pub(super) async fn budget_headroom(
    tx: &mut Transaction<'static, Any>,
    tenant_id: &str,
    leased: i64,
) -> StoreResult<Option<i64>> {
    let now = now_ms();
    let mut headroom: Option<i64> = None;
    for b in budgets_in(tx, tenant_id).await? {
        let spent = spent_since(tx, tenant_id, b.period_start(now)).await?;
        let left = b.amount_micros - spent - leased;
        headroom = Some(headroom.map_or(left, |h| h.min(left)));
    }
    Ok(headroom)
}

async fn key_budgets_in(
    tx: &mut Transaction<'static, Any>,
    key_id: &str,
) -> StoreResult<Vec<Budget>> {
    let q = format!("SELECT {KEY_BUDGET_COLUMNS} FROM key_budgets WHERE key_id = $1");
    select_budgets(tx, &q, key_id).await
}

/// Cost of a key's usage records received since `since_ms`.
async fn key_spent_since(
    tx: &mut Transaction<'static, Any>,
    key_id: &str,
    since_ms: i64,
) -> StoreResult<i64> {
    Ok(sqlx::query(
        "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) FROM usage_records \
         WHERE key_id = $1 AND received_at_ms >= $2",
    )
    .bind(key_id)
    .bind(since_ms)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?)
}

/// What a key's budgets still allow to be granted: for each, amount −
/// spent in the current period − outstanding key leases; `None` without
/// budgets.
pub(super) async fn key_budget_headroom(
    tx: &mut Transaction<'static, Any>,
    key_id: &str,
) -> StoreResult<Option<i64>> {
    let budgets = key_budgets_in(tx, key_id).await?;
    if budgets.is_empty() {
        return Ok(None);
    }
    let leased: i64 = sqlx::query(
        "SELECT CAST(COALESCE(SUM(outstanding_micros), 0) AS BIGINT) FROM lease_grants \
         WHERE key_id = $1 AND released_at_ms = 0",
    )
    .bind(key_id)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    let now = now_ms();
    let mut headroom = i64::MAX;
    for b in budgets {
        let spent = key_spent_since(tx, key_id, b.period_start(now)).await?;
        headroom = headroom.min(b.amount_micros - spent - leased);
    }
    Ok(Some(headroom))
}

/// Records an alert for a budget whose soft threshold `spent` reached
/// (once per period).
async fn raise_alert(
    tx: &mut Transaction<'static, Any>,
    b: &Budget,
    start: i64,
    spent: i64,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO budget_alerts (id, budget_id, tenant_id, period_start_ms, \
         threshold_micros, spent_micros, created_at_ms, delivered_at_ms, key_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8) \
         ON CONFLICT (budget_id, period_start_ms) DO NOTHING",
    )
    .bind(new_id("ba"))
    .bind(&b.id)
    .bind(&b.tenant_id)
    .bind(start)
    .bind(b.soft_micros)
    .bind(spent)
    .bind(now)
    .bind(&b.key_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// After a usage charge of `key_id`: alerts of the key's budgets.
pub(super) async fn check_key_soft_thresholds(
    tx: &mut Transaction<'static, Any>,
    key_id: &str,
) -> StoreResult<()> {
    let now = now_ms();
    for b in key_budgets_in(tx, key_id).await? {
        if b.soft_micros <= 0 {
            continue;
        }
        let start = b.period_start(now);
        let spent = key_spent_since(tx, key_id, start).await?;
        if spent >= b.soft_micros {
            raise_alert(tx, &b, start, spent, now).await?;
        }
    }
    Ok(())
}

/// After a usage charge: records an alert for every budget whose soft
/// threshold the period's spend has now reached (once per period).
pub(super) async fn check_soft_thresholds(
    tx: &mut Transaction<'static, Any>,
    tenant_id: &str,
) -> StoreResult<()> {
    let now = now_ms();
    for b in budgets_in(tx, tenant_id).await? {
        if b.soft_micros <= 0 {
            continue;
        }
        let start = b.period_start(now);
        let spent = spent_since(tx, tenant_id, start).await?;
        if spent >= b.soft_micros {
            raise_alert(tx, &b, start, spent, now).await?;
        }
    }
    Ok(())
}

const ALERT_SELECT: &str = "SELECT a.id, a.budget_id, a.tenant_id, a.key_id, a.period_start_ms, \
     a.threshold_micros, a.spent_micros, a.created_at_ms, a.delivered_at_ms, \
     COALESCE(b.webhook_url, k.webhook_url, '') AS webhook_url, \
     COALESCE(b.period, k.period, '') AS period \
     FROM budget_alerts a LEFT JOIN budgets b ON b.id = a.budget_id \
     LEFT JOIN key_budgets k ON k.id = a.budget_id";

fn alert_from_row(row: &AnyRow) -> StoreResult<BudgetAlert> {
    Ok(BudgetAlert {
        id: row.try_get("id")?,
        budget_id: row.try_get("budget_id")?,
        tenant_id: row.try_get("tenant_id")?,
        key_id: row.try_get("key_id")?,
        period_start_ms: row.try_get("period_start_ms")?,
        threshold_micros: row.try_get("threshold_micros")?,
        spent_micros: row.try_get("spent_micros")?,
        created_at_ms: row.try_get("created_at_ms")?,
        delivered_at_ms: row.try_get("delivered_at_ms")?,
        webhook_url: row.try_get("webhook_url")?,
        period: row.try_get("period")?,
    })
}

impl Store {
    /// Sets (inserts or replaces) the tenant's budget for a period.
    pub async fn set_budget(&self, b: &Budget) -> StoreResult<Budget> {
        if Period::parse(&b.period).is_none() {
            return Err(StoreError::Invalid(format!(
                "period {:?}: use day, week or month",
                b.period
            )));
        }
        if !b.key_id.is_empty() {
            return self.set_key_budget(b).await;
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO budgets (id, tenant_id, period, amount_micros, soft_micros, \
             utc_offset_min, webhook_url, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (tenant_id, period) DO UPDATE SET amount_micros = $4, \
             soft_micros = $5, utc_offset_min = $6, webhook_url = $7",
        )
        .bind(new_id("bg"))
        .bind(&b.tenant_id)
        .bind(&b.period)
        .bind(b.amount_micros)
        .bind(b.soft_micros)
        .bind(i64::from(b.utc_offset_min))
        .bind(&b.webhook_url)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {BUDGET_COLUMNS} FROM budgets WHERE tenant_id = $1 AND period = $2"
        ))
        .bind(&b.tenant_id)
        .bind(&b.period)
        .fetch_one(&mut *tx)
        .await?;
        super::audit::write_pending_in(&mut tx).await?;
        tx.commit().await?;
        budget_from_row(&row)
    }

    async fn set_key_budget(&self, b: &Budget) -> StoreResult<Budget> {
        // A config change: the snapshot marks budgeted keys.
        let mut change = self.begin_config_change().await?;
        let tx = &mut change.tx;
        let owned = sqlx::query("SELECT 1 FROM caller_keys WHERE id = $1 AND tenant_id = $2")
            .bind(&b.key_id)
            .bind(&b.tenant_id)
            .fetch_optional(&mut **tx)
            .await?;
        if owned.is_none() {
            return Err(StoreError::NotFound(format!("key '{}'", b.key_id)));
        }
        sqlx::query(
            "INSERT INTO key_budgets (id, tenant_id, key_id, period, amount_micros, soft_micros, \
             utc_offset_min, webhook_url, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (key_id, period) DO UPDATE SET amount_micros = $5, \
             soft_micros = $6, utc_offset_min = $7, webhook_url = $8",
        )
        .bind(new_id("bg"))
        .bind(&b.tenant_id)
        .bind(&b.key_id)
        .bind(&b.period)
        .bind(b.amount_micros)
        .bind(b.soft_micros)
        .bind(i64::from(b.utc_offset_min))
        .bind(&b.webhook_url)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {KEY_BUDGET_COLUMNS} FROM key_budgets WHERE key_id = $1 AND period = $2"
        ))
        .bind(&b.key_id)
        .bind(&b.period)
        .fetch_one(&mut **tx)
        .await?;
        let b = budget_from_row(&row)?;
        self.commit_config_change(change).await?;
        Ok(b)
    }

    /// A tenant's budgets (its own, then its keys') with what each period
    /// has spent so far.
    pub async fn list_budgets(&self, tenant_id: &str) -> StoreResult<Vec<(Budget, i64)>> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let mut out = Vec::new();
        for b in budgets_in(&mut tx, tenant_id).await? {
            let spent = spent_since(&mut tx, tenant_id, b.period_start(now)).await?;
            out.push((b, spent));
        }
        let q = format!("SELECT {KEY_BUDGET_COLUMNS} FROM key_budgets WHERE tenant_id = $1");
        let keyed = select_budgets(&mut tx, &q, tenant_id).await?;
        for b in keyed {
            let spent = key_spent_since(&mut tx, &b.key_id, b.period_start(now)).await?;
            out.push((b, spent));
        }
        tx.commit().await?;
        out.sort_by(|a, b| (&a.0.key_id, &a.0.period).cmp(&(&b.0.key_id, &b.0.period)));
        Ok(out)
    }

    /// Removes the tenant's budget for `period`, or its key's (`key_id`).
    pub async fn delete_budget(
        &self,
        tenant_id: &str,
        key_id: &str,
        period: &str,
    ) -> StoreResult<()> {
        let done = if key_id.is_empty() {
            sqlx::query("DELETE FROM budgets WHERE tenant_id = $1 AND period = $2")
                .bind(tenant_id)
                .bind(period)
                .execute(&self.pool)
                .await?
        } else {
            let mut change = self.begin_config_change().await?;
            let done = sqlx::query(
                "DELETE FROM key_budgets WHERE tenant_id = $1 AND key_id = $2 AND period = $3",
            )
            .bind(tenant_id)
            .bind(key_id)
            .bind(period)
            .execute(&mut *change.tx)
            .await?;
            if done.rows_affected() > 0 {
                self.commit_config_change(change).await?;
            }
            done
        };
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("{period} budget")));
        }
        Ok(())
    }

    /// A tenant's budget alerts, newest first.
    pub async fn list_budget_alerts(&self, tenant_id: &str) -> StoreResult<Vec<BudgetAlert>> {
        sqlx::query(&format!(
            "{ALERT_SELECT} WHERE a.tenant_id = $1 ORDER BY a.created_at_ms DESC LIMIT 1000"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(alert_from_row)
        .collect()
    }

    /// Alerts whose budget has a webhook and that were not delivered yet.
    pub async fn undelivered_alerts(&self) -> StoreResult<Vec<BudgetAlert>> {
        sqlx::query(&format!(
            "{ALERT_SELECT} WHERE a.delivered_at_ms = 0 \
             AND COALESCE(b.webhook_url, k.webhook_url, '') <> '' \
             ORDER BY a.created_at_ms LIMIT 100"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(alert_from_row)
        .collect()
    }

    pub async fn mark_alert_delivered(&self, id: &str) -> StoreResult<()> {
        sqlx::query("UPDATE budget_alerts SET delivered_at_ms = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Keys with budgets of their own (the snapshot marks them).
pub(super) async fn budgeted_keys(
    tx: &mut Transaction<'static, Any>,
) -> StoreResult<std::collections::HashSet<String>> {
    sqlx::query("SELECT DISTINCT key_id FROM key_budgets")
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::billing::{kind, NewLedgerEntry};
    use super::super::test_support::temp_store;
    use super::super::UsageRecord;
    use super::*;

    #[tokio::test]
    async fn hard_limit_caps_grants_and_soft_threshold_alerts_once() {
        let (store, _dir) = temp_store().await;
        let t = store.create_tenant("acme").await.unwrap();
        let other = store.create_tenant("beta").await.unwrap();
        store
            .add_ledger_entry(&NewLedgerEntry {
                tenant_id: &t.id,
                kind: kind::TOPUP,
                amount_micros: 1_000_000,
                idempotency_key: "t",
                reference: "",
                note: "",
            })
            .await
            .unwrap();
        store
            .set_budget(&Budget {
                id: String::new(),
                tenant_id: t.id.clone(),
                key_id: String::new(),
                period: "month".into(),
                amount_micros: 1_000,
                soft_micros: 600,
                utc_offset_min: 0,
                webhook_url: String::new(),
            })
            .await
            .unwrap();
        // The balance allows 1,000,000; the budget only 1,000.
        let g = store
            .acquire_lease(&t.id, "dp", "", 5_000, 60_000)
            .await
            .unwrap();
        assert_eq!(g.granted_micros, 1_000);
        let charge = |id: &str, cost| UsageRecord {
            id: id.into(),
            tenant_id: t.id.clone(),
            cost_micros: cost,
            lease_id: g.lease_id.clone(),
            ..UsageRecord::default()
        };
        store
            .insert_usage_records(&[charge("u1", 500)])
            .await
            .unwrap();
        assert!(store.list_budget_alerts(&t.id).await.unwrap().is_empty());
        store
            .insert_usage_records(&[charge("u2", 200)])
            .await
            .unwrap();
        store
            .insert_usage_records(&[charge("u3", 100)])
            .await
            .unwrap();
        let alerts = store.list_budget_alerts(&t.id).await.unwrap();
        assert_eq!(alerts.len(), 1, "one alert per period");
        assert_eq!(alerts[0].spent_micros, 700);
        assert!(store
            .list_budget_alerts(&other.id)
            .await
            .unwrap()
            .is_empty());
        // Spent 800 of 1,000 with 200 still leased: nothing more to grant.
        let g2 = store
            .acquire_lease(&t.id, "dp", &g.lease_id, 5_000, 60_000)
            .await
            .unwrap();
        assert_eq!(g2.granted_micros, 0);
        let listed = store.list_budgets(&t.id).await.unwrap();
        assert_eq!(listed[0].1, 800);
        assert!(store
            .set_budget(&Budget {
                period: "year".into(),
                ..listed[0].0.clone()
            })
            .await
            .is_err());
    }

    #[tokio::test]
    async fn key_budgets_cap_key_leases_apart_from_the_tenant() {
        let (store, _dir) = temp_store().await;
        let t = store.create_tenant("acme").await.unwrap();
        let other = store.create_tenant("beta").await.unwrap();
        store
            .add_ledger_entry(&NewLedgerEntry {
                tenant_id: &t.id,
                kind: kind::TOPUP,
                amount_micros: 1_000_000,
                idempotency_key: "t",
                reference: "",
                note: "",
            })
            .await
            .unwrap();
        let key = store
            .create_key(crate::store::NewCallerKey {
                id: "ck_intern".into(),
                tenant_id: t.id.clone(),
                name: "intern".into(),
                prefix: "tg-x".into(),
                key_hash: "h".into(),
                expires_at_ms: 0,
                allowed_providers: Vec::new(),
            })
            .await
            .unwrap();
        let budget = Budget {
            id: String::new(),
            tenant_id: t.id.clone(),
            key_id: key.id.clone(),
            period: "day".into(),
            amount_micros: 1_000,
            soft_micros: 500,
            utc_offset_min: 0,
            webhook_url: String::new(),
        };
        let v = store.config_version().await.unwrap();
        store.set_budget(&budget).await.unwrap();
        assert_eq!(
            store.config_version().await.unwrap(),
            v + 1,
            "DPs learn of it"
        );
        // Another tenant cannot attach a budget to this key.
        assert!(store
            .set_budget(&Budget {
                tenant_id: other.id.clone(),
                ..budget.clone()
            })
            .await
            .is_err());
        let kg = store
            .acquire_key_lease(&t.id, &key.id, "dp", "", 5_000, 60_000)
            .await
            .unwrap();
        assert_eq!(kg.granted_micros, 1_000);
        assert!(store
            .acquire_key_lease(&other.id, &key.id, "dp", "", 5_000, 60_000)
            .await
            .is_err());
        // The key lease does not count against the tenant's balance.
        let tg = store
            .acquire_lease(&t.id, "dp", "", 5_000, 60_000)
            .await
            .unwrap();
        assert_eq!(tg.granted_micros, 5_000);
        assert_eq!(store.get_account(&t.id).await.unwrap().leased_micros, 5_000);
        // A call of 600 settles both leases once; the soft threshold alerts
        // for the key.
        let rec = UsageRecord {
            id: "ur_k1".into(),
            tenant_id: t.id.clone(),
            key_id: key.id.clone(),
            cost_micros: 600,
            lease_id: tg.lease_id.clone(),
            key_lease_id: kg.lease_id.clone(),
            received_at_ms: now_ms(),
            ..UsageRecord::default()
        };
        store
            .insert_usage_records(std::slice::from_ref(&rec))
            .await
            .unwrap();
        store.insert_usage_records(&[rec]).await.unwrap();
        assert_eq!(store.get_account(&t.id).await.unwrap().leased_micros, 4_400);
        // Spent 600, 400 still leased: nothing more for the key.
        let again = store
            .acquire_key_lease(&t.id, &key.id, "dp", &kg.lease_id, 5_000, 60_000)
            .await
            .unwrap();
        assert_eq!(again.granted_micros, 0);
        assert_eq!(again.outstanding_micros, 400);
        let listed = store.list_budgets(&t.id).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].0.key_id.as_str(), listed[0].1),
            (key.id.as_str(), 600)
        );
        let alerts = store.list_budget_alerts(&t.id).await.unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].key_id, key.id);
        assert!(store.list_budgets(&other.id).await.unwrap().is_empty());
        assert!(store
            .delete_budget(&other.id, &key.id, "day")
            .await
            .is_err());
        store.delete_budget(&t.id, &key.id, "day").await.unwrap();
        assert!(store.list_budgets(&t.id).await.unwrap().is_empty());
    }
}
