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
    "id, tenant_id, period, amount_micros, soft_micros, utc_offset_min, webhook_url";

fn budget_from_row(row: &AnyRow) -> StoreResult<Budget> {
    let offset: i64 = row.try_get("utc_offset_min")?;
    Ok(Budget {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
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

async fn budgets_in(
    tx: &mut Transaction<'static, Any>,
    tenant_id: &str,
) -> StoreResult<Vec<Budget>> {
    sqlx::query(&format!(
        "SELECT {BUDGET_COLUMNS} FROM budgets WHERE tenant_id = $1"
    ))
    .bind(tenant_id)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(budget_from_row)
    .collect()
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
            sqlx::query(
                "INSERT INTO budget_alerts (id, budget_id, tenant_id, period_start_ms, \
                 threshold_micros, spent_micros, created_at_ms, delivered_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0) \
                 ON CONFLICT (budget_id, period_start_ms) DO NOTHING",
            )
            .bind(new_id("ba"))
            .bind(&b.id)
            .bind(tenant_id)
            .bind(start)
            .bind(b.soft_micros)
            .bind(spent)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

const ALERT_SELECT: &str = "SELECT a.id, a.budget_id, a.tenant_id, a.period_start_ms, \
     a.threshold_micros, a.spent_micros, a.created_at_ms, a.delivered_at_ms, \
     COALESCE(b.webhook_url, '') AS webhook_url, COALESCE(b.period, '') AS period \
     FROM budget_alerts a LEFT JOIN budgets b ON b.id = a.budget_id";

fn alert_from_row(row: &AnyRow) -> StoreResult<BudgetAlert> {
    Ok(BudgetAlert {
        id: row.try_get("id")?,
        budget_id: row.try_get("budget_id")?,
        tenant_id: row.try_get("tenant_id")?,
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
        tx.commit().await?;
        budget_from_row(&row)
    }

    /// A tenant's budgets with what each period has spent so far.
    pub async fn list_budgets(&self, tenant_id: &str) -> StoreResult<Vec<(Budget, i64)>> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let mut out = Vec::new();
        for b in budgets_in(&mut tx, tenant_id).await? {
            let spent = spent_since(&mut tx, tenant_id, b.period_start(now)).await?;
            out.push((b, spent));
        }
        tx.commit().await?;
        out.sort_by(|a, b| a.0.period.cmp(&b.0.period));
        Ok(out)
    }

    pub async fn delete_budget(&self, tenant_id: &str, period: &str) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM budgets WHERE tenant_id = $1 AND period = $2")
            .bind(tenant_id)
            .bind(period)
            .execute(&self.pool)
            .await?;
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
            "{ALERT_SELECT} WHERE a.delivered_at_ms = 0 AND b.webhook_url <> '' \
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
}
