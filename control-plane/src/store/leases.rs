//! Balance leases: slices of a tenant's spendable balance reserved for one
//! data plane (docs/billing.md). A grant never exceeds
//! balance + credit limit − outstanding grants, decided in one transaction.

use sqlx::Row;
use tollgate_core::ids::new_id;
use tollgate_core::time::now_ms;

use super::billing::{account_in, ensure_account};
use sqlx::{Any, Transaction};

use super::{Store, StoreError, StoreResult};

const LEASE_PREFIX: &str = "ls";

/// The answer to a lease request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    pub lease_id: String,
    /// Newly granted (0 when nothing is spendable).
    pub granted_micros: i64,
    /// Outstanding on this lease after the grant.
    pub outstanding_micros: i64,
    pub expires_at_ms: i64,
}

impl Store {
    /// Grants up to `amount` more micro-dollars to `node_id` for `tenant_id`
    /// on `lease_id` (extended when still active, else a new lease), and
    /// pushes the lease's expiry to now + `ttl_ms`.
    pub async fn acquire_lease(
        &self,
        tenant_id: &str,
        node_id: &str,
        lease_id: &str,
        amount: i64,
        ttl_ms: i64,
    ) -> StoreResult<LeaseGrant> {
        let mut tx = self.pool.begin().await?;
        // First statement writes: SQLite takes its write lock up front, so
        // two grants for the same tenant are serialised.
        ensure_account(&mut tx, tenant_id).await?;
        let account = account_in(&mut tx, tenant_id).await?;
        let mut spendable = account.spendable_micros();
        // Budgets: the hard limit caps grants like the balance does.
        if let Some(headroom) =
            super::budgets::budget_headroom(&mut tx, tenant_id, account.leased_micros).await?
        {
            spendable = spendable.min(headroom);
        }
        grant_in(
            tx, tenant_id, "", node_id, lease_id, amount, spendable, ttl_ms,
        )
        .await
    }

    /// Like [`Store::acquire_lease`] for a key with budgets: grants up to
    /// what the key's budgets still allow (amount − spent this period −
    /// leased). The key's calls still spend from the tenant's lease too.
    pub async fn acquire_key_lease(
        &self,
        tenant_id: &str,
        key_id: &str,
        node_id: &str,
        lease_id: &str,
        amount: i64,
        ttl_ms: i64,
    ) -> StoreResult<LeaseGrant> {
        let mut tx = self.pool.begin().await?;
        // Write first (serialises grants on SQLite), and only for a key of
        // this tenant.
        let touched =
            sqlx::query("UPDATE caller_keys SET name = name WHERE id = $1 AND tenant_id = $2")
                .bind(key_id)
                .bind(tenant_id)
                .execute(&mut *tx)
                .await?;
        if touched.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("key '{key_id}'")));
        }
        // A key without budgets (removed meanwhile) is not held back here.
        let spendable = super::budgets::key_budget_headroom(&mut tx, key_id)
            .await?
            .unwrap_or(amount);
        grant_in(
            tx, tenant_id, key_id, node_id, lease_id, amount, spendable, ttl_ms,
        )
        .await
    }

    /// A data plane gives back `amount` it will not spend. Its spend still
    /// arrives as usage records and takes the rest off the lease.
    pub async fn return_lease(
        &self,
        tenant_id: &str,
        node_id: &str,
        lease_id: &str,
        amount: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE lease_grants SET outstanding_micros = CASE WHEN outstanding_micros > $1 \
             THEN outstanding_micros - $1 ELSE 0 END \
             WHERE id = $2 AND tenant_id = $3 AND node_id = $4 AND released_at_ms = 0",
        )
        .bind(amount.max(0))
        .bind(lease_id)
        .bind(tenant_id)
        .bind(node_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Releases leases that expired more than `grace_ms` ago (their data
    /// plane vanished or stopped renewing). Returns how many.
    pub async fn reclaim_expired_leases(&self, grace_ms: i64) -> StoreResult<u64> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE lease_grants SET released_at_ms = $1, outstanding_micros = 0 \
             WHERE released_at_ms = 0 AND expires_at_ms < $2",
        )
        .bind(now)
        .bind(now.saturating_sub(grace_ms))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// Grants up to `amount` (at most `spendable`) on `lease_id` or a new lease
/// of `tenant_id` (and `key_id`: '' for the tenant's balance), in `tx`.
#[allow(clippy::too_many_arguments)]
async fn grant_in(
    mut tx: Transaction<'static, Any>,
    tenant_id: &str,
    key_id: &str,
    node_id: &str,
    lease_id: &str,
    amount: i64,
    spendable: i64,
    ttl_ms: i64,
) -> StoreResult<LeaseGrant> {
    let granted = amount.max(0).min(spendable.max(0));
    let now = now_ms();
    let expires = now.saturating_add(ttl_ms);
    let existing = if lease_id.is_empty() {
        None
    } else {
        sqlx::query(
            "SELECT outstanding_micros FROM lease_grants WHERE id = $1 AND tenant_id = $2 \
             AND node_id = $3 AND key_id = $4 AND released_at_ms = 0",
        )
        .bind(lease_id)
        .bind(tenant_id)
        .bind(node_id)
        .bind(key_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| row.try_get::<i64, _>(0))
        .transpose()?
    };
    let (id, outstanding) = match existing {
        Some(outstanding) => {
            sqlx::query(
                "UPDATE lease_grants SET outstanding_micros = outstanding_micros + $1, \
                 granted_micros = granted_micros + $1, expires_at_ms = $2 WHERE id = $3",
            )
            .bind(granted)
            .bind(expires)
            .bind(lease_id)
            .execute(&mut *tx)
            .await?;
            (lease_id.to_owned(), outstanding + granted)
        }
        None => {
            let id = new_id(LEASE_PREFIX);
            sqlx::query(
                "INSERT INTO lease_grants (id, tenant_id, node_id, outstanding_micros, \
                 granted_micros, expires_at_ms, released_at_ms, created_at_ms, key_id) \
                 VALUES ($1, $2, $3, $4, $4, $5, 0, $6, $7)",
            )
            .bind(&id)
            .bind(tenant_id)
            .bind(node_id)
            .bind(granted)
            .bind(expires)
            .bind(now)
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
            (id, granted)
        }
    };
    tx.commit().await?;
    Ok(LeaseGrant {
        lease_id: id,
        granted_micros: granted,
        outstanding_micros: outstanding,
        expires_at_ms: expires,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::billing::{kind, NewLedgerEntry};
    use super::super::test_support::temp_store;
    use super::super::UsageRecord;

    #[tokio::test]
    async fn grants_never_exceed_the_balance_and_usage_settles_them() {
        let (store, _dir) = temp_store().await;
        let t = store.create_tenant("acme").await.unwrap();
        store
            .add_ledger_entry(&NewLedgerEntry {
                tenant_id: &t.id,
                kind: kind::TOPUP,
                amount_micros: 1_000,
                idempotency_key: "t1",
                reference: "",
                note: "",
            })
            .await
            .unwrap();
        let a = store
            .acquire_lease(&t.id, "dp-a", "", 700, 60_000)
            .await
            .unwrap();
        assert_eq!(a.granted_micros, 700);
        let b = store
            .acquire_lease(&t.id, "dp-b", "", 700, 60_000)
            .await
            .unwrap();
        assert_eq!(b.granted_micros, 300);
        let c = store
            .acquire_lease(&t.id, "dp-c", "", 700, 60_000)
            .await
            .unwrap();
        assert_eq!(c.granted_micros, 0);
        // dp-a spends 200 (its record arrives, twice): balance and lease
        // both fall once, so nothing becomes spendable twice.
        let rec = UsageRecord {
            id: "ur_1".into(),
            tenant_id: t.id.clone(),
            cost_micros: 200,
            lease_id: a.lease_id.clone(),
            ..UsageRecord::default()
        };
        store
            .insert_usage_records(std::slice::from_ref(&rec))
            .await
            .unwrap();
        store.insert_usage_records(&[rec]).await.unwrap();
        let acct = store.get_account(&t.id).await.unwrap();
        assert_eq!(acct.balance_micros, 800);
        assert_eq!(acct.leased_micros, 800);
        assert_eq!(acct.spendable_micros(), 0);
        // dp-a returns its 500 leftover; it becomes spendable again.
        store
            .return_lease(&t.id, "dp-a", &a.lease_id, 500)
            .await
            .unwrap();
        let again = store
            .acquire_lease(&t.id, "dp-c", &c.lease_id, 700, 60_000)
            .await
            .unwrap();
        assert_eq!(again.granted_micros, 500);
        assert_eq!(again.lease_id, c.lease_id);
        // Another node cannot extend someone else's lease: it gets a new one.
        let other = store
            .acquire_lease(&t.id, "dp-x", &a.lease_id, 1, 60_000)
            .await
            .unwrap();
        assert_ne!(other.lease_id, a.lease_id);
    }

    #[tokio::test]
    async fn expired_leases_are_reclaimed() {
        let (store, _dir) = temp_store().await;
        let t = store.create_tenant("acme").await.unwrap();
        store.set_account(&t.id, None, Some(100)).await.unwrap();
        let a = store
            .acquire_lease(&t.id, "dp-a", "", 100, -1)
            .await
            .unwrap();
        assert_eq!(a.granted_micros, 100);
        assert_eq!(store.get_account(&t.id).await.unwrap().leased_micros, 100);
        assert_eq!(store.reclaim_expired_leases(0).await.unwrap(), 1);
        assert_eq!(store.get_account(&t.id).await.unwrap().leased_micros, 0);
        // A reclaimed lease cannot be extended.
        let b = store
            .acquire_lease(&t.id, "dp-a", &a.lease_id, 10, 60_000)
            .await
            .unwrap();
        assert_ne!(b.lease_id, a.lease_id);
    }
}
