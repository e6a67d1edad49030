//! Billing: model prices (configuration, travel in the snapshot), tenant
//! accounts and their append-only journal. A balance changes only in the
//! transaction that appends its journal entry; every entry has a unique
//! idempotency key, so a resent top-up or usage record counts once.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use tollgate_core::ids::new_id;
use tollgate_core::pricing::FULL_MULTIPLIER_BPS;
use tollgate_core::time::now_ms;

use super::{Store, StoreError, StoreResult};

/// Journal entry kinds.
pub mod kind {
    pub const TOPUP: &str = "topup";
    pub const CREDIT: &str = "credit";
    pub const ADJUSTMENT: &str = "adjustment";
    pub const REFUND: &str = "refund";
    pub const REDEMPTION: &str = "redemption";
    pub const USAGE: &str = "usage";
}

/// Id prefix of journal entries.
const LEDGER_PREFIX: &str = "le";
const PRICE_PREFIX: &str = "mp";

/// Prices of a model for all targets (`provider_id` empty) or one target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredPrice {
    pub tenant_id: String,
    pub model_id: String,
    pub model_name: String,
    pub provider_id: String,
    /// Provider name, empty with `provider_id`.
    pub provider_name: String,
    pub input_per_mtok: i64,
    pub cache_read_per_mtok: i64,
    pub cache_write_per_mtok: i64,
    pub output_per_mtok: i64,
    /// `None`: reasoning costs output.
    pub reasoning_per_mtok: Option<i64>,
    pub per_request_micros: i64,
    pub max_output_tokens: i64,
    pub updated_at_ms: i64,
}

/// A tenant's account; defaults until the first write creates its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub tenant_id: String,
    pub balance_micros: i64,
    pub credit_limit_micros: i64,
    pub price_multiplier_bps: u32,
    /// 0: not frozen.
    pub frozen_at_ms: i64,
    pub frozen_reason: String,
    pub last_activity_ms: i64,
    /// Outstanding grants of active leases.
    pub leased_micros: i64,
}

impl Account {
    /// What new leases may still take: balance + credit limit − leased.
    pub fn spendable_micros(&self) -> i64 {
        self.balance_micros
            .saturating_add(self.credit_limit_micros)
            .saturating_sub(self.leased_micros)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: String,
    pub tenant_id: String,
    pub kind: String,
    pub amount_micros: i64,
    pub balance_after_micros: i64,
    pub reference: String,
    pub note: String,
    pub created_at_ms: i64,
}

/// A journal entry to append.
#[derive(Debug, Clone)]
pub struct NewLedgerEntry<'a> {
    pub tenant_id: &'a str,
    pub kind: &'a str,
    pub amount_micros: i64,
    pub idempotency_key: &'a str,
    pub reference: &'a str,
    pub note: &'a str,
}

/// Which part of the journal to list.
#[derive(Debug, Clone)]
pub struct LedgerQuery {
    pub since_ms: i64,
    pub until_ms: i64,
    pub limit: i64,
    /// Empty: every kind.
    pub kind: String,
}

const LEDGER_COLUMNS: &str =
    "id, tenant_id, kind, amount_micros, balance_after_micros, reference, note, created_at_ms";

fn entry_from_row(row: &AnyRow) -> StoreResult<LedgerEntry> {
    Ok(LedgerEntry {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        kind: row.try_get("kind")?,
        amount_micros: row.try_get("amount_micros")?,
        balance_after_micros: row.try_get("balance_after_micros")?,
        reference: row.try_get("reference")?,
        note: row.try_get("note")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

const PRICE_SELECT: &str = "SELECT mp.tenant_id, mp.model_id, m.name AS model_name, \
     mp.provider_id, COALESCE(p.name, '') AS provider_name, mp.input_per_mtok, \
     mp.cache_read_per_mtok, mp.cache_write_per_mtok, mp.output_per_mtok, \
     mp.reasoning_per_mtok, mp.per_request_micros, mp.max_output_tokens, mp.updated_at_ms \
     FROM model_prices mp JOIN models m ON m.id = mp.model_id \
     LEFT JOIN providers p ON p.id = mp.provider_id";

pub(super) fn price_from_row(row: &AnyRow) -> StoreResult<StoredPrice> {
    let reasoning: i64 = row.try_get("reasoning_per_mtok")?;
    Ok(StoredPrice {
        tenant_id: row.try_get("tenant_id")?,
        model_id: row.try_get("model_id")?,
        model_name: row.try_get("model_name")?,
        provider_id: row.try_get("provider_id")?,
        provider_name: row.try_get("provider_name")?,
        input_per_mtok: row.try_get("input_per_mtok")?,
        cache_read_per_mtok: row.try_get("cache_read_per_mtok")?,
        cache_write_per_mtok: row.try_get("cache_write_per_mtok")?,
        output_per_mtok: row.try_get("output_per_mtok")?,
        reasoning_per_mtok: (reasoning >= 0).then_some(reasoning),
        per_request_micros: row.try_get("per_request_micros")?,
        max_output_tokens: row.try_get("max_output_tokens")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// All prices, for the snapshot (inside its read transaction).
pub(super) async fn load_prices(
    tx: &mut Transaction<'static, Any>,
) -> StoreResult<Vec<StoredPrice>> {
    sqlx::query(&format!(
        "{PRICE_SELECT} ORDER BY mp.model_id, mp.provider_id"
    ))
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(price_from_row)
    .collect()
}

/// Billing settings of every account, for the snapshot.
pub(super) async fn load_accounts(
    tx: &mut Transaction<'static, Any>,
) -> StoreResult<Vec<(String, u32, bool)>> {
    sqlx::query("SELECT tenant_id, price_multiplier_bps, frozen_at_ms FROM tenant_accounts")
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| {
            let bps: i64 = row.try_get("price_multiplier_bps")?;
            Ok((
                row.try_get("tenant_id")?,
                u32::try_from(bps).unwrap_or(FULL_MULTIPLIER_BPS),
                row.try_get::<i64, _>("frozen_at_ms")? != 0,
            ))
        })
        .collect()
}

/// Creates the account row when missing. As the first statement of a
/// transaction it also takes SQLite's write lock up front.
pub(super) async fn ensure_account(
    tx: &mut Transaction<'static, Any>,
    tenant_id: &str,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO tenant_accounts (tenant_id, balance_micros, credit_limit_micros, \
         price_multiplier_bps, frozen_at_ms, frozen_reason, last_activity_ms, created_at_ms) \
         VALUES ($1, 0, 0, $2, 0, '', $3, $3) ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(tenant_id)
    .bind(i64::from(FULL_MULTIPLIER_BPS))
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Appends one journal entry and moves the balance by its amount, unless
/// its idempotency key is already in the journal. Returns the entry (the
/// first one for a repeated key) and whether it is new. The account row
/// must exist (see [`ensure_account`]).
pub(super) async fn append_entry(
    tx: &mut Transaction<'static, Any>,
    e: &NewLedgerEntry<'_>,
) -> StoreResult<(LedgerEntry, bool)> {
    let id = new_id(LEDGER_PREFIX);
    let now = now_ms();
    let done = sqlx::query(
        "INSERT INTO ledger_entries (id, tenant_id, kind, amount_micros, balance_after_micros, \
         idempotency_key, reference, note, created_at_ms) \
         SELECT $1, $2, $3, $4, balance_micros + $4, $5, $6, $7, $8 \
         FROM tenant_accounts WHERE tenant_id = $2 \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(&id)
    .bind(e.tenant_id)
    .bind(e.kind)
    .bind(e.amount_micros)
    .bind(e.idempotency_key)
    .bind(e.reference)
    .bind(e.note)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let fresh = done.rows_affected() == 1;
    if fresh {
        sqlx::query(
            "UPDATE tenant_accounts SET balance_micros = balance_micros + $1, \
             last_activity_ms = $2 WHERE tenant_id = $3",
        )
        .bind(e.amount_micros)
        .bind(now)
        .bind(e.tenant_id)
        .execute(&mut **tx)
        .await?;
    }
    let row = sqlx::query(&format!(
        "SELECT {LEDGER_COLUMNS} FROM ledger_entries WHERE idempotency_key = $1"
    ))
    .bind(e.idempotency_key)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("account of tenant '{}'", e.tenant_id)))?;
    let entry = entry_from_row(&row)?;
    if entry.tenant_id != e.tenant_id {
        // Another tenant's key: never reveal or reuse its entry.
        return Err(StoreError::AlreadyExists(format!(
            "idempotency key '{}'",
            e.idempotency_key
        )));
    }
    Ok((entry, fresh))
}

/// Charges a newly stored usage record to its tenant and takes its cost off
/// the lease it was reserved from (a lease already reclaimed stays at 0:
/// that spend is the bounded overdraft of docs/billing.md). Called in the
/// transaction that inserted the record, only when the insert was new, so a
/// resent record never charges twice.
pub(super) async fn charge_usage(
    tx: &mut Transaction<'static, Any>,
    r: &super::UsageRecord,
) -> StoreResult<()> {
    if r.cost_micros <= 0 {
        return Ok(());
    }
    ensure_account(tx, &r.tenant_id).await?;
    append_entry(
        tx,
        &NewLedgerEntry {
            tenant_id: &r.tenant_id,
            kind: kind::USAGE,
            amount_micros: -r.cost_micros,
            idempotency_key: &format!("usage:{}", r.id),
            reference: &r.id,
            note: &r.model,
        },
    )
    .await?;
    if !r.lease_id.is_empty() {
        sqlx::query(
            "UPDATE lease_grants SET outstanding_micros = CASE WHEN outstanding_micros > $1 \
             THEN outstanding_micros - $1 ELSE 0 END \
             WHERE id = $2 AND tenant_id = $3 AND released_at_ms = 0",
        )
        .bind(r.cost_micros)
        .bind(&r.lease_id)
        .bind(&r.tenant_id)
        .execute(&mut **tx)
        .await?;
    }
    if !r.key_lease_id.is_empty() {
        sqlx::query(
            "UPDATE lease_grants SET outstanding_micros = CASE WHEN outstanding_micros > $1 \
             THEN outstanding_micros - $1 ELSE 0 END \
             WHERE id = $2 AND tenant_id = $3 AND key_id = $4 AND released_at_ms = 0",
        )
        .bind(r.cost_micros)
        .bind(&r.key_lease_id)
        .bind(&r.tenant_id)
        .bind(&r.key_id)
        .execute(&mut **tx)
        .await?;
    }
    super::budgets::check_soft_thresholds(tx, &r.tenant_id).await?;
    super::budgets::check_key_soft_thresholds(tx, &r.key_id).await?;
    Ok(())
}

async fn read_account(
    exec: &mut Transaction<'static, Any>,
    tenant_id: &str,
) -> StoreResult<Account> {
    let row = sqlx::query(
        "SELECT balance_micros, credit_limit_micros, price_multiplier_bps, frozen_at_ms, \
         frozen_reason, last_activity_ms FROM tenant_accounts WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(&mut **exec)
    .await?;
    let leased: i64 = sqlx::query(
        "SELECT CAST(COALESCE(SUM(outstanding_micros), 0) AS BIGINT) FROM lease_grants \
         WHERE tenant_id = $1 AND key_id = '' AND released_at_ms = 0",
    )
    .bind(tenant_id)
    .fetch_one(&mut **exec)
    .await?
    .try_get(0)?;
    let mut account = Account {
        tenant_id: tenant_id.to_owned(),
        balance_micros: 0,
        credit_limit_micros: 0,
        price_multiplier_bps: FULL_MULTIPLIER_BPS,
        frozen_at_ms: 0,
        frozen_reason: String::new(),
        last_activity_ms: 0,
        leased_micros: leased,
    };
    if let Some(row) = row {
        let bps: i64 = row.try_get("price_multiplier_bps")?;
        account.balance_micros = row.try_get("balance_micros")?;
        account.credit_limit_micros = row.try_get("credit_limit_micros")?;
        account.price_multiplier_bps = u32::try_from(bps).unwrap_or(FULL_MULTIPLIER_BPS);
        account.frozen_at_ms = row.try_get("frozen_at_ms")?;
        account.frozen_reason = row.try_get("frozen_reason")?;
        account.last_activity_ms = row.try_get("last_activity_ms")?;
    }
    Ok(account)
}

/// Account inside an open transaction (leases).
pub(super) async fn account_in(
    tx: &mut Transaction<'static, Any>,
    tenant_id: &str,
) -> StoreResult<Account> {
    read_account(tx, tenant_id).await
}

impl Store {
    /// Sets (inserts or replaces) a price. `model` and `provider` are ids or
    /// names within the tenant; an empty provider prices every target.
    pub async fn set_price(
        &self,
        tenant_id: &str,
        model: &str,
        provider: &str,
        price: &StoredPrice,
    ) -> StoreResult<StoredPrice> {
        let mut change = self.begin_config_change().await?;
        let model_id: String =
            sqlx::query("SELECT id FROM models WHERE tenant_id = $1 AND (id = $2 OR name = $2)")
                .bind(tenant_id)
                .bind(model)
                .fetch_optional(&mut *change.tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("model '{model}'")))?
                .try_get(0)?;
        let provider_id: String = if provider.is_empty() {
            String::new()
        } else {
            sqlx::query("SELECT id FROM providers WHERE tenant_id = $1 AND (id = $2 OR name = $2)")
                .bind(tenant_id)
                .bind(provider)
                .fetch_optional(&mut *change.tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("provider '{provider}'")))?
                .try_get(0)?
        };
        sqlx::query(
            "INSERT INTO model_prices (id, tenant_id, model_id, provider_id, input_per_mtok, \
             cache_read_per_mtok, cache_write_per_mtok, output_per_mtok, reasoning_per_mtok, \
             per_request_micros, max_output_tokens, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (model_id, provider_id) DO UPDATE SET \
             input_per_mtok = $5, cache_read_per_mtok = $6, cache_write_per_mtok = $7, \
             output_per_mtok = $8, reasoning_per_mtok = $9, per_request_micros = $10, \
             max_output_tokens = $11, updated_at_ms = $12",
        )
        .bind(new_id(PRICE_PREFIX))
        .bind(tenant_id)
        .bind(&model_id)
        .bind(&provider_id)
        .bind(price.input_per_mtok)
        .bind(price.cache_read_per_mtok)
        .bind(price.cache_write_per_mtok)
        .bind(price.output_per_mtok)
        .bind(price.reasoning_per_mtok.unwrap_or(-1))
        .bind(price.per_request_micros)
        .bind(price.max_output_tokens)
        .bind(now_ms())
        .execute(&mut *change.tx)
        .await?;
        let row = sqlx::query(&format!(
            "{PRICE_SELECT} WHERE mp.model_id = $1 AND mp.provider_id = $2"
        ))
        .bind(&model_id)
        .bind(&provider_id)
        .fetch_one(&mut *change.tx)
        .await?;
        let stored = price_from_row(&row)?;
        self.commit_config_change(change).await?;
        Ok(stored)
    }

    pub async fn list_prices(&self, tenant_id: &str) -> StoreResult<Vec<StoredPrice>> {
        sqlx::query(&format!(
            "{PRICE_SELECT} WHERE mp.tenant_id = $1 ORDER BY m.name, mp.provider_id"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(price_from_row)
        .collect()
    }

    pub async fn delete_price(
        &self,
        tenant_id: &str,
        model: &str,
        provider: &str,
    ) -> StoreResult<()> {
        let mut change = self.begin_config_change().await?;
        let done = sqlx::query(
            "DELETE FROM model_prices WHERE tenant_id = $1 AND model_id IN \
             (SELECT id FROM models WHERE tenant_id = $1 AND (id = $2 OR name = $2)) \
             AND (provider_id = $3 OR provider_id IN \
             (SELECT id FROM providers WHERE tenant_id = $1 AND name = $3))",
        )
        .bind(tenant_id)
        .bind(model)
        .bind(provider)
        .execute(&mut *change.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("price of model '{model}'")));
        }
        self.commit_config_change(change).await?;
        Ok(())
    }

    pub async fn get_account(&self, tenant_id: &str) -> StoreResult<Account> {
        let mut tx = self.pool.begin().await?;
        let account = read_account(&mut tx, tenant_id).await?;
        tx.commit().await?;
        Ok(account)
    }

    /// Sets the multiplier and/or credit limit. The multiplier travels in
    /// the snapshot, so this is a configuration change.
    pub async fn set_account(
        &self,
        tenant_id: &str,
        multiplier_bps: Option<u32>,
        credit_limit_micros: Option<i64>,
    ) -> StoreResult<Account> {
        let mut change = self.begin_config_change().await?;
        ensure_account(&mut change.tx, tenant_id).await?;
        if let Some(bps) = multiplier_bps {
            sqlx::query(
                "UPDATE tenant_accounts SET price_multiplier_bps = $1 WHERE tenant_id = $2",
            )
            .bind(i64::from(bps))
            .bind(tenant_id)
            .execute(&mut *change.tx)
            .await?;
        }
        if let Some(limit) = credit_limit_micros {
            sqlx::query("UPDATE tenant_accounts SET credit_limit_micros = $1 WHERE tenant_id = $2")
                .bind(limit)
                .bind(tenant_id)
                .execute(&mut *change.tx)
                .await?;
        }
        let account = read_account(&mut change.tx, tenant_id).await?;
        self.commit_config_change(change).await?;
        Ok(account)
    }

    /// Freezes (`Some(reason)`) or unfreezes (`None`) a tenant: a
    /// configuration change, the data planes refuse its calls.
    pub async fn set_frozen(&self, tenant_id: &str, reason: Option<&str>) -> StoreResult<Account> {
        let mut change = self.begin_config_change().await?;
        ensure_account(&mut change.tx, tenant_id).await?;
        sqlx::query(
            "UPDATE tenant_accounts SET frozen_at_ms = $1, frozen_reason = $2, \
             last_activity_ms = $3 WHERE tenant_id = $4",
        )
        .bind(if reason.is_some() { now_ms() } else { 0 })
        .bind(reason.unwrap_or_default())
        .bind(now_ms())
        .bind(tenant_id)
        .execute(&mut *change.tx)
        .await?;
        let account = read_account(&mut change.tx, tenant_id).await?;
        self.commit_config_change(change).await?;
        Ok(account)
    }

    /// Freezes every unfrozen account whose last activity (charge, credit,
    /// freeze change) is older than `cutoff_ms`. Returns the tenant ids.
    pub async fn freeze_inactive(&self, cutoff_ms: i64) -> StoreResult<Vec<String>> {
        let ids: Vec<String> = sqlx::query(
            "SELECT tenant_id FROM tenant_accounts WHERE frozen_at_ms = 0 AND last_activity_ms < $1",
        )
        .bind(cutoff_ms)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
        for id in &ids {
            self.set_frozen(id, Some("inactive: frozen by the inactivity job"))
                .await?;
        }
        Ok(ids)
    }

    /// Appends a journal entry (top-up, credit, adjustment, refund);
    /// idempotent on its key.
    pub async fn add_ledger_entry(&self, e: &NewLedgerEntry<'_>) -> StoreResult<LedgerEntry> {
        let mut tx = self.pool.begin().await?;
        ensure_account(&mut tx, e.tenant_id).await?;
        let (entry, _) = append_entry(&mut tx, e).await?;
        super::audit::write_pending_in(&mut tx).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// A tenant's journal, newest first.
    pub async fn list_ledger(
        &self,
        tenant_id: &str,
        q: &LedgerQuery,
    ) -> StoreResult<Vec<LedgerEntry>> {
        sqlx::query(&format!(
            "SELECT {LEDGER_COLUMNS} FROM ledger_entries WHERE tenant_id = $1 \
             AND created_at_ms >= $2 AND created_at_ms < $3 AND ($4 = '' OR kind = $4) \
             ORDER BY created_at_ms DESC, id DESC LIMIT $5"
        ))
        .bind(tenant_id)
        .bind(q.since_ms)
        .bind(q.until_ms)
        .bind(&q.kind)
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(entry_from_row)
        .collect()
    }

    /// Sum of every journal entry of a tenant (equals its balance).
    pub async fn ledger_total(&self, tenant_id: &str) -> StoreResult<i64> {
        Ok(sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount_micros), 0) AS BIGINT) FROM ledger_entries \
             WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::test_support::temp_store;
    use super::*;

    fn topup<'a>(tenant: &'a str, amount: i64, key: &'a str) -> NewLedgerEntry<'a> {
        NewLedgerEntry {
            tenant_id: tenant,
            kind: kind::TOPUP,
            amount_micros: amount,
            idempotency_key: key,
            reference: "inv-1",
            note: "",
        }
    }

    #[tokio::test]
    async fn topups_are_idempotent_and_move_the_balance_with_the_journal() {
        let (store, _dir) = temp_store().await;
        let a = store.create_tenant("acme").await.unwrap();
        let b = store.create_tenant("beta").await.unwrap();
        assert_eq!(store.get_account(&a.id).await.unwrap().balance_micros, 0);
        let first = store
            .add_ledger_entry(&topup(&a.id, 5_000_000, "k1"))
            .await
            .unwrap();
        assert_eq!(first.balance_after_micros, 5_000_000);
        let again = store
            .add_ledger_entry(&topup(&a.id, 5_000_000, "k1"))
            .await
            .unwrap();
        assert_eq!(again, first);
        store
            .add_ledger_entry(&topup(&a.id, 250, "k2"))
            .await
            .unwrap();
        let acct = store.get_account(&a.id).await.unwrap();
        assert_eq!(acct.balance_micros, 5_000_250);
        assert_eq!(store.ledger_total(&a.id).await.unwrap(), 5_000_250);
        // Another tenant cannot reuse (or read) the entry through its key.
        let err = store
            .add_ledger_entry(&topup(&b.id, 1, "k1"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)), "{err}");
        assert_eq!(store.get_account(&b.id).await.unwrap().balance_micros, 0);
        assert_eq!(store.ledger_total(&b.id).await.unwrap(), 0);
        let q = LedgerQuery {
            since_ms: 0,
            until_ms: i64::MAX,
            limit: 10,
            kind: String::new(),
        };
        let entries = store.list_ledger(&a.id, &q).await.unwrap();
        assert_eq!(entries.len(), 2);
        assert!(store.list_ledger(&b.id, &q).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn inactive_accounts_are_frozen_and_active_ones_are_not() {
        let (store, _dir) = temp_store().await;
        let a = store.create_tenant("acme").await.unwrap();
        let b = store.create_tenant("beta").await.unwrap();
        store
            .add_ledger_entry(&topup(&a.id, 1, "a1"))
            .await
            .unwrap();
        let cutoff = now_ms() + 1;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store
            .add_ledger_entry(&topup(&b.id, 1, "b1"))
            .await
            .unwrap();
        let v = store.config_version().await.unwrap();
        assert_eq!(
            store.freeze_inactive(cutoff).await.unwrap(),
            vec![a.id.clone()]
        );
        assert!(store.config_version().await.unwrap() > v);
        assert_ne!(store.get_account(&a.id).await.unwrap().frozen_at_ms, 0);
        assert_eq!(store.get_account(&b.id).await.unwrap().frozen_at_ms, 0);
        // Already frozen: not frozen again.
        assert!(store.freeze_inactive(cutoff).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn concurrent_topups_lose_nothing() {
        let (store, _dir) = temp_store().await;
        let a = store.create_tenant("acme").await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = store.clone();
            let tenant = a.id.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("k{}", i % 10);
                store
                    .add_ledger_entry(&topup(&tenant, 100, &key))
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 10 distinct keys, each sent twice.
        assert_eq!(
            store.get_account(&a.id).await.unwrap().balance_micros,
            1_000
        );
        assert_eq!(store.ledger_total(&a.id).await.unwrap(), 1_000);
    }
}
