//! Queries behind the dashboard's `ConsoleService`: a provider's sealed
//! credential (for the connection test) and redemption-code batches.

use sqlx::Row;

use super::providers::{provider_from_row, PROVIDER_COLUMNS};
use super::{Provider, Store, StoreError, StoreResult};

/// One generated batch of redemption codes (the codes themselves are not
/// stored, only their hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeBatchRow {
    pub batch_id: String,
    pub count: i64,
    pub redeemed: i64,
    pub value_micros: i64,
    pub expires_at_ms: i64,
    pub note: String,
    pub created_at_ms: i64,
}

impl Store {
    /// A provider of `tenant_id` (by id or name) with its sealed API key
    /// (empty when it has none). Looked up within the tenant only.
    pub async fn provider_credential(
        &self,
        tenant_id: &str,
        provider: &str,
    ) -> StoreResult<(Provider, String)> {
        let row = sqlx::query(&format!(
            "SELECT {PROVIDER_COLUMNS}, api_key_ciphertext FROM providers \
             WHERE tenant_id = $1 AND (id = $2 OR name = $2)"
        ))
        .bind(tenant_id)
        .bind(provider)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("provider '{provider}'")))?;
        Ok((provider_from_row(&row)?, row.try_get("api_key_ciphertext")?))
    }

    /// Batches of redemption codes, newest first (at most 500).
    pub async fn list_code_batches(&self) -> StoreResult<Vec<CodeBatchRow>> {
        sqlx::query(
            "SELECT batch_id, CAST(COUNT(*) AS BIGINT) AS n, \
             CAST(SUM(CASE WHEN redeemed_at_ms > 0 THEN 1 ELSE 0 END) AS BIGINT) AS redeemed, \
             CAST(MAX(value_micros) AS BIGINT) AS value_micros, \
             CAST(MAX(expires_at_ms) AS BIGINT) AS expires_at_ms, MAX(note) AS note, \
             CAST(MIN(created_at_ms) AS BIGINT) AS created_at_ms \
             FROM redemption_codes GROUP BY batch_id \
             ORDER BY MIN(created_at_ms) DESC, batch_id DESC LIMIT 500",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(CodeBatchRow {
                batch_id: row.try_get("batch_id")?,
                count: row.try_get("n")?,
                redeemed: row.try_get("redeemed")?,
                value_micros: row.try_get("value_micros")?,
                expires_at_ms: row.try_get("expires_at_ms")?,
                note: row.try_get("note")?,
                created_at_ms: row.try_get("created_at_ms")?,
            })
        })
        .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::test_support::temp_store;

    #[tokio::test]
    async fn batches_count_their_redeemed_codes() {
        let (store, _dir) = temp_store().await;
        let a = store.create_tenant("acme").await.unwrap();
        let (first, codes) = store
            .generate_codes(3, 2_000_000, 0, "promo")
            .await
            .unwrap();
        let (second, _) = store.generate_codes(1, 5, 99, "").await.unwrap();
        store.redeem_code(&a.id, &codes[1]).await.unwrap();
        let batches = store.list_code_batches().await.unwrap();
        assert_eq!(batches.len(), 2);
        let b = batches.iter().find(|b| b.batch_id == first).unwrap();
        assert_eq!(
            (
                b.count,
                b.redeemed,
                b.value_micros,
                b.expires_at_ms,
                b.note.as_str()
            ),
            (3, 1, 2_000_000, 0, "promo")
        );
        let b = batches.iter().find(|b| b.batch_id == second).unwrap();
        assert_eq!(
            (b.count, b.redeemed, b.value_micros, b.expires_at_ms),
            (1, 0, 5, 99)
        );
    }

    #[tokio::test]
    async fn a_credential_is_found_only_within_its_tenant() {
        let (store, _dir) = temp_store().await;
        let a = store.create_tenant("acme").await.unwrap();
        let b = store.create_tenant("beta").await.unwrap();
        let p = store
            .add_provider(super::super::NewProvider {
                id: "pv_test1".into(),
                tenant_id: a.id.clone(),
                name: "main".into(),
                kind: "openai".into(),
                base_url: String::new(),
                api_key_ciphertext: "sealed".into(),
                key_fingerprint: "f".into(),
                key_last4: "abcd".into(),
                settings: Default::default(),
            })
            .await
            .unwrap();
        let (found, sealed) = store.provider_credential(&a.id, "main").await.unwrap();
        assert_eq!(
            (found.id.as_str(), sealed.as_str()),
            (p.id.as_str(), "sealed")
        );
        assert!(store.provider_credential(&b.id, "main").await.is_err());
        assert!(store.provider_credential(&b.id, &p.id).await.is_err());
    }
}
