//! Redemption codes: an operator generates a batch with a value; a tenant
//! redeems each code once. Only a code's SHA-256 is stored.

use rand::Rng;
use sha2::{Digest, Sha256};
use tollgate_core::ids::new_id;
use tollgate_core::time::now_ms;

use super::billing::{append_entry, ensure_account, kind, LedgerEntry, NewLedgerEntry};
use super::{Store, StoreError, StoreResult};

/// Codes look like `tgc_` + 26 characters of Crockford base32 (130 bits).
const CODE_PREFIX: &str = "tgc_";
const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn new_code() -> String {
    let mut rng = rand::thread_rng();
    let body: String = (0..26)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    format!("{CODE_PREFIX}{body}")
}

/// Hash of a code as typed: case and surrounding blanks do not matter.
fn code_hash(code: &str) -> String {
    hex::encode(Sha256::digest(code.trim().to_ascii_uppercase().as_bytes()))
}

impl Store {
    /// Generates `count` codes worth `value_micros` each; returns the batch
    /// id and the codes (shown once).
    pub async fn generate_codes(
        &self,
        count: u32,
        value_micros: i64,
        expires_at_ms: i64,
        note: &str,
    ) -> StoreResult<(String, Vec<String>)> {
        let batch = new_id("cb");
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let mut codes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let code = new_code();
            sqlx::query(
                "INSERT INTO redemption_codes (code_hash, batch_id, value_micros, expires_at_ms, \
                 note, created_at_ms, redeemed_by, redeemed_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, '', 0)",
            )
            .bind(code_hash(&code))
            .bind(&batch)
            .bind(value_micros)
            .bind(expires_at_ms.max(0))
            .bind(note)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            codes.push(code);
        }
        super::audit::write_pending_in(&mut tx).await?;
        tx.commit().await?;
        Ok((batch, codes))
    }

    /// Redeems a code for a tenant: marks it redeemed (only if it was not,
    /// atomically) and credits its value, in one transaction.
    pub async fn redeem_code(&self, tenant_id: &str, code: &str) -> StoreResult<LedgerEntry> {
        let hash = code_hash(code);
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        ensure_account(&mut tx, tenant_id).await?;
        let done = sqlx::query(
            "UPDATE redemption_codes SET redeemed_by = $1, redeemed_at_ms = $2 \
             WHERE code_hash = $3 AND redeemed_at_ms = 0 \
             AND (expires_at_ms = 0 OR expires_at_ms > $2)",
        )
        .bind(tenant_id)
        .bind(now)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            // Same answer for unknown, expired and used codes: the answer
            // must not help anyone guess.
            return Err(StoreError::Invalid(
                "this code is not valid: unknown, expired or already redeemed".into(),
            ));
        }
        let value: i64 =
            sqlx::query("SELECT value_micros FROM redemption_codes WHERE code_hash = $1")
                .bind(&hash)
                .fetch_one(&mut *tx)
                .await
                .and_then(|row| sqlx::Row::try_get(&row, 0))?;
        let key = format!("redeem:{hash}");
        let (entry, _) = append_entry(
            &mut tx,
            &NewLedgerEntry {
                tenant_id,
                kind: kind::REDEMPTION,
                amount_micros: value,
                idempotency_key: &key,
                reference: &hash[..12],
                note: "redemption code",
            },
        )
        .await?;
        super::audit::write_pending_in(&mut tx).await?;
        tx.commit().await?;
        Ok(entry)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::test_support::temp_store;
    use super::*;

    #[tokio::test]
    async fn a_code_is_redeemed_once_by_one_tenant() {
        let (store, _dir) = temp_store().await;
        let a = store.create_tenant("acme").await.unwrap();
        let b = store.create_tenant("beta").await.unwrap();
        let (_, codes) = store
            .generate_codes(2, 5_000_000, 0, "promo")
            .await
            .unwrap();
        assert_eq!(codes.len(), 2);
        assert_ne!(codes[0], codes[1]);
        let entry = store
            .redeem_code(&a.id, &codes[0].to_lowercase())
            .await
            .unwrap();
        assert_eq!(entry.amount_micros, 5_000_000);
        assert_eq!(entry.kind, kind::REDEMPTION);
        // Neither the same tenant nor another can redeem it again.
        assert!(store.redeem_code(&a.id, &codes[0]).await.is_err());
        assert!(store.redeem_code(&b.id, &codes[0]).await.is_err());
        assert!(store.redeem_code(&b.id, "tgc_NOPE").await.is_err());
        assert_eq!(
            store.get_account(&a.id).await.unwrap().balance_micros,
            5_000_000
        );
        assert_eq!(store.get_account(&b.id).await.unwrap().balance_micros, 0);
        // Concurrent redemptions of one code: exactly one wins.
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (store, code, t) = (store.clone(), codes[1].clone(), b.id.clone());
            tasks.push(tokio::spawn(async move {
                store.redeem_code(&t, &code).await.is_ok()
            }));
        }
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1);
        assert_eq!(
            store.get_account(&b.id).await.unwrap().balance_micros,
            5_000_000
        );
    }

    #[tokio::test]
    async fn expired_codes_are_refused() {
        let (store, _dir) = temp_store().await;
        let a = store.create_tenant("acme").await.unwrap();
        let (_, codes) = store.generate_codes(1, 10, 1, "").await.unwrap();
        assert!(store.redeem_code(&a.id, &codes[0]).await.is_err());
    }
}
