//! Rate limits of a tenant, its models and its keys, and the operator's
//! named tiers (docs/rate-limits.md). Every tenant query is filtered by
//! tenant; a model or key is resolved within the tenant only.

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, StoreError, StoreResult};

/// Where a limit set applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitScope {
    Tenant,
    Model,
    Key,
}

impl LimitScope {
    pub fn parse(s: &str) -> Option<LimitScope> {
        match s {
            "tenant" => Some(LimitScope::Tenant),
            "model" => Some(LimitScope::Model),
            "key" => Some(LimitScope::Key),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Tenant => "tenant",
            LimitScope::Model => "model",
            LimitScope::Key => "key",
        }
    }
}

/// Limits of one scope or tier; 0: not limited (or the tier's value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitValues {
    pub requests_per_second: u64,
    pub requests_per_minute: u64,
    pub requests_per_day: u64,
    pub tokens_per_minute: u64,
    pub tokens_per_day: u64,
    pub max_concurrent: u64,
    /// Longest wait for a concurrency slot (ms); 0: refused at once.
    pub queue_ms: u64,
    /// Calls that may wait for a slot at once; 0: no queue.
    pub queue_depth: u64,
}

impl RateLimitValues {
    /// These values, with `tier`'s wherever one is 0.
    pub fn over(self, tier: &RateLimitValues) -> RateLimitValues {
        let pick = |own: u64, t: u64| if own > 0 { own } else { t };
        RateLimitValues {
            requests_per_second: pick(self.requests_per_second, tier.requests_per_second),
            requests_per_minute: pick(self.requests_per_minute, tier.requests_per_minute),
            requests_per_day: pick(self.requests_per_day, tier.requests_per_day),
            tokens_per_minute: pick(self.tokens_per_minute, tier.tokens_per_minute),
            tokens_per_day: pick(self.tokens_per_day, tier.tokens_per_day),
            max_concurrent: pick(self.max_concurrent, tier.max_concurrent),
            queue_ms: pick(self.queue_ms, tier.queue_ms),
            queue_depth: pick(self.queue_depth, tier.queue_depth),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        *self == RateLimitValues::default()
    }
}

/// A stored limit set of one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitRow {
    pub tenant_id: String,
    pub scope: LimitScope,
    /// Empty for the tenant scope.
    pub target_id: String,
    /// Empty: no tier.
    pub tier: String,
    pub limits: RateLimitValues,
    pub updated_at_ms: i64,
}

/// A named tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitTierRow {
    pub name: String,
    pub limits: RateLimitValues,
    pub updated_at_ms: i64,
}

/// A limit set with its tier resolved: what data planes enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveRateLimit {
    pub tenant_id: String,
    pub scope: LimitScope,
    pub target_id: String,
    pub limits: RateLimitValues,
}

const VALUE_COLUMNS: &str = "requests_per_second, requests_per_minute, requests_per_day, \
                             tokens_per_minute, tokens_per_day, max_concurrent, \
                             queue_ms, queue_depth";

fn values_of(row: &sqlx::any::AnyRow) -> StoreResult<RateLimitValues> {
    let get =
        |c: &str| -> StoreResult<u64> { Ok(u64::try_from(row.try_get::<i64, _>(c)?).unwrap_or(0)) };
    Ok(RateLimitValues {
        requests_per_second: get("requests_per_second")?,
        requests_per_minute: get("requests_per_minute")?,
        requests_per_day: get("requests_per_day")?,
        tokens_per_minute: get("tokens_per_minute")?,
        tokens_per_day: get("tokens_per_day")?,
        max_concurrent: get("max_concurrent")?,
        queue_ms: get("queue_ms")?,
        queue_depth: get("queue_depth")?,
    })
}

fn bind_values<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    v: &RateLimitValues,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let i = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    q.bind(i(v.requests_per_second))
        .bind(i(v.requests_per_minute))
        .bind(i(v.requests_per_day))
        .bind(i(v.tokens_per_minute))
        .bind(i(v.tokens_per_day))
        .bind(i(v.max_concurrent))
        .bind(i(v.queue_ms))
        .bind(i(v.queue_depth))
}

fn row_to_limit(row: &sqlx::any::AnyRow) -> StoreResult<RateLimitRow> {
    let scope: String = row.try_get("scope")?;
    let scope = LimitScope::parse(&scope)
        .ok_or_else(|| StoreError::Invalid(format!("unknown rate limit scope '{scope}'")))?;
    Ok(RateLimitRow {
        tenant_id: row.try_get("tenant_id")?,
        scope,
        target_id: row.try_get("target_id")?,
        tier: row.try_get("tier")?,
        limits: values_of(row)?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn row_to_tier(row: &sqlx::any::AnyRow) -> StoreResult<RateLimitTierRow> {
    Ok(RateLimitTierRow {
        name: row.try_get("name")?,
        limits: values_of(row)?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

impl Store {
    /// The id of the scope's target within `tenant_id` (by id or name; a
    /// revoked key cannot get limits).
    async fn limit_target(
        conn: &mut sqlx::AnyConnection,
        tenant_id: &str,
        scope: LimitScope,
        target: &str,
    ) -> StoreResult<String> {
        let (sql, what) = match scope {
            LimitScope::Tenant => return Ok(String::new()),
            LimitScope::Model => (
                "SELECT id FROM models WHERE tenant_id = $1 AND (id = $2 OR name = $2)",
                "model",
            ),
            LimitScope::Key => (
                "SELECT id FROM caller_keys WHERE tenant_id = $1 AND (id = $2 OR name = $2) \
                 AND revoked_at_ms = 0",
                "key",
            ),
        };
        sqlx::query(sql)
            .bind(tenant_id)
            .bind(target)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("{what} '{target}'")))?
            .try_get::<String, _>(0)
            .map_err(StoreError::from)
    }

    /// Creates or replaces the limits of one scope of `tenant_id`.
    pub async fn set_rate_limit(
        &self,
        tenant_id: &str,
        scope: LimitScope,
        target: &str,
        limits: RateLimitValues,
        tier: &str,
        now_ms: i64,
    ) -> StoreResult<RateLimitRow> {
        let mut change = self.begin_config_change().await?;
        let target_id = Self::limit_target(&mut change.tx, tenant_id, scope, target).await?;
        if !tier.is_empty()
            && sqlx::query("SELECT name FROM rate_limit_tiers WHERE name = $1")
                .bind(tier)
                .fetch_optional(&mut *change.tx)
                .await?
                .is_none()
        {
            return Err(StoreError::NotFound(format!("tier '{tier}'")));
        }
        sqlx::query(
            "DELETE FROM rate_limits WHERE tenant_id = $1 AND scope = $2 AND target_id = $3",
        )
        .bind(tenant_id)
        .bind(scope.as_str())
        .bind(target_id.as_str())
        .execute(&mut *change.tx)
        .await?;
        let sql = format!(
            "INSERT INTO rate_limits (tenant_id, scope, target_id, tier, {VALUE_COLUMNS}, \
             updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        let q = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(scope.as_str())
            .bind(target_id.as_str())
            .bind(tier);
        bind_values(q, &limits)
            .bind(now_ms)
            .execute(&mut *change.tx)
            .await?;
        self.commit_config_change(change).await?;
        Ok(RateLimitRow {
            tenant_id: tenant_id.to_string(),
            scope,
            target_id,
            tier: tier.to_string(),
            limits,
            updated_at_ms: now_ms,
        })
    }

    /// Every limit set of `tenant_id`, tenant scope first.
    pub async fn list_rate_limits(&self, tenant_id: &str) -> StoreResult<Vec<RateLimitRow>> {
        sqlx::query(&format!(
            "SELECT tenant_id, scope, target_id, tier, {VALUE_COLUMNS}, updated_at_ms \
             FROM rate_limits WHERE tenant_id = $1 \
             ORDER BY CASE scope WHEN 'tenant' THEN 0 WHEN 'model' THEN 1 ELSE 2 END, target_id"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(row_to_limit)
        .collect()
    }

    /// Removes the limits of one scope; false when there were none.
    pub async fn clear_rate_limit(
        &self,
        tenant_id: &str,
        scope: LimitScope,
        target: &str,
    ) -> StoreResult<bool> {
        let mut change = self.begin_config_change().await?;
        let target_id = Self::limit_target(&mut change.tx, tenant_id, scope, target).await?;
        let done = sqlx::query(
            "DELETE FROM rate_limits WHERE tenant_id = $1 AND scope = $2 AND target_id = $3",
        )
        .bind(tenant_id)
        .bind(scope.as_str())
        .bind(target_id.as_str())
        .execute(&mut *change.tx)
        .await?;
        if done.rows_affected() == 0 {
            // Nothing changed: no new snapshot version.
            change.tx.rollback().await?;
            return Ok(false);
        }
        self.commit_config_change(change).await?;
        Ok(true)
    }

    /// Creates or replaces a tier (every limit set naming it changes too).
    pub async fn set_rate_limit_tier(
        &self,
        name: &str,
        limits: RateLimitValues,
        now_ms: i64,
    ) -> StoreResult<RateLimitTierRow> {
        let mut change = self.begin_config_change().await?;
        sqlx::query("DELETE FROM rate_limit_tiers WHERE name = $1")
            .bind(name)
            .execute(&mut *change.tx)
            .await?;
        let sql = format!(
            "INSERT INTO rate_limit_tiers (name, {VALUE_COLUMNS}, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        bind_values(sqlx::query(&sql).bind(name), &limits)
            .bind(now_ms)
            .execute(&mut *change.tx)
            .await?;
        self.commit_config_change(change).await?;
        Ok(RateLimitTierRow {
            name: name.to_string(),
            limits,
            updated_at_ms: now_ms,
        })
    }

    pub async fn list_rate_limit_tiers(&self) -> StoreResult<Vec<RateLimitTierRow>> {
        sqlx::query(&format!(
            "SELECT name, {VALUE_COLUMNS}, updated_at_ms FROM rate_limit_tiers ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(row_to_tier)
        .collect()
    }

    /// Deletes a tier no limit set names; false when there was none.
    pub async fn delete_rate_limit_tier(&self, name: &str) -> StoreResult<bool> {
        let mut change = self.begin_config_change().await?;
        let used: i64 =
            sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM rate_limits WHERE tier = $1")
                .bind(name)
                .fetch_one(&mut *change.tx)
                .await?
                .try_get(0)?;
        if used > 0 {
            return Err(StoreError::InUse(format!(
                "tier '{name}' is assigned to {used} limit set(s); change them first"
            )));
        }
        let done = sqlx::query("DELETE FROM rate_limit_tiers WHERE name = $1")
            .bind(name)
            .execute(&mut *change.tx)
            .await?;
        if done.rows_affected() == 0 {
            change.tx.rollback().await?;
            return Ok(false);
        }
        self.commit_config_change(change).await?;
        Ok(true)
    }

    /// Every limit set with its tier resolved (snapshot building), in the
    /// snapshot's transaction. Sets that limit nothing are left out.
    pub(super) async fn all_effective_rate_limits(
        conn: &mut sqlx::AnyConnection,
    ) -> StoreResult<Vec<EffectiveRateLimit>> {
        let tiers: HashMap<String, RateLimitValues> = sqlx::query(&format!(
            "SELECT name, {VALUE_COLUMNS}, updated_at_ms FROM rate_limit_tiers"
        ))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| row_to_tier(r).map(|t| (t.name, t.limits)))
        .collect::<StoreResult<_>>()?;
        let rows = sqlx::query(&format!(
            "SELECT tenant_id, scope, target_id, tier, {VALUE_COLUMNS}, updated_at_ms \
             FROM rate_limits ORDER BY tenant_id, scope, target_id"
        ))
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let r = row_to_limit(row)?;
            let limits = match tiers.get(&r.tier) {
                Some(t) => r.limits.over(t),
                None => r.limits,
            };
            if !limits.is_unlimited() {
                out.push(EffectiveRateLimit {
                    tenant_id: r.tenant_id,
                    scope: r.scope,
                    target_id: r.target_id,
                    limits,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::test_backends::test_stores;

    #[test]
    fn explicit_values_override_the_tier() {
        let tier = RateLimitValues {
            requests_per_minute: 60,
            tokens_per_minute: 10_000,
            ..Default::default()
        };
        let own = RateLimitValues {
            requests_per_minute: 5,
            max_concurrent: 2,
            ..Default::default()
        };
        let e = own.over(&tier);
        assert_eq!(e.requests_per_minute, 5);
        assert_eq!(e.tokens_per_minute, 10_000);
        assert_eq!(e.max_concurrent, 2);
        assert_eq!(e.requests_per_day, 0);
        assert!(RateLimitValues::default().is_unlimited());
    }

    #[tokio::test]
    async fn limits_tiers_and_snapshot_resolution() {
        for t in test_stores().await {
            let s = &t.store;
            let tenant = s.create_tenant("acme").await.unwrap();
            let other = s.create_tenant("other").await.unwrap();
            let pro = RateLimitValues {
                requests_per_minute: 600,
                tokens_per_minute: 90_000,
                queue_ms: 2_000,
                queue_depth: 4,
                ..Default::default()
            };
            // A tier must exist before it is assigned.
            let err = s
                .set_rate_limit(&tenant.id, LimitScope::Tenant, "", pro, "pro", 2)
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::NotFound(_)), "{}", t.backend);
            s.set_rate_limit_tier("pro", pro, 2).await.unwrap();
            let own = RateLimitValues {
                requests_per_minute: 60,
                queue_depth: 2,
                ..Default::default()
            };
            let v0 = s.config_version().await.unwrap();
            s.set_rate_limit(&tenant.id, LimitScope::Tenant, "", own, "pro", 3)
                .await
                .unwrap();
            assert_eq!(s.config_version().await.unwrap(), v0 + 1);
            // Another tenant's model or key is not found within this tenant.
            let err = s
                .set_rate_limit(&other.id, LimitScope::Model, "nope", own, "", 3)
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::NotFound(_)));
            let listed = s.list_rate_limits(&tenant.id).await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].tier, "pro");
            assert_eq!(listed[0].limits, own);
            assert_eq!(s.list_rate_limit_tiers().await.unwrap()[0].limits, pro);
            assert!(s.list_rate_limits(&other.id).await.unwrap().is_empty());
            // The tier is in use.
            assert!(matches!(
                s.delete_rate_limit_tier("pro").await.unwrap_err(),
                StoreError::InUse(_)
            ));
            let mut tx = s.begin_snapshot_read().await.unwrap();
            let eff = Store::all_effective_rate_limits(&mut tx).await.unwrap();
            tx.commit().await.unwrap();
            assert_eq!(eff.len(), 1);
            assert_eq!(eff[0].limits.requests_per_minute, 60);
            assert_eq!(eff[0].limits.tokens_per_minute, 90_000);
            // The queue: the tier's wait, the set's own depth.
            assert_eq!(
                (eff[0].limits.queue_ms, eff[0].limits.queue_depth),
                (2_000, 2)
            );
            assert!(s
                .clear_rate_limit(&tenant.id, LimitScope::Tenant, "")
                .await
                .unwrap());
            assert!(!s
                .clear_rate_limit(&tenant.id, LimitScope::Tenant, "")
                .await
                .unwrap());
            assert!(s.delete_rate_limit_tier("pro").await.unwrap());
            assert!(s.list_rate_limit_tiers().await.unwrap().is_empty());
        }
    }
}
