//! Persistence through sqlx's `Any` driver, so the same code and the same
//! portable SQL run on the embedded SQLite file and on Postgres.
//!
//! Portability rules: `$N` placeholders (SQLite accepts them), TEXT/BIGINT
//! columns only, booleans as 0/1, epoch-ms timestamps, aggregates cast to
//! BIGINT (Postgres' SUM of BIGINT is NUMERIC, which `Any` cannot decode).
//!
//! Every configuration write runs in a transaction whose FIRST statement bumps
//! `config_version`: on SQLite this takes the write lock up front (a deferred
//! transaction that reads before writing can fail with SQLITE_BUSY instead of
//! waiting), and on every backend it makes the version and the data commit
//! together. After commit the new version is published on a watch channel
//! that the snapshot broadcaster follows.

pub mod audit;
pub mod billing;
mod budgets;
mod cache_policies;
mod codes;
mod console;
pub(crate) mod dp_groups;
mod guardrails;
pub mod key_rotation;
mod keys;
mod leases;
mod models;
mod providers;
pub mod quota;
mod rate_limits;
mod routes;
mod snapshot_data;
pub mod status;
mod tenants;
#[cfg(test)]
pub(crate) mod test_backends;
mod usage;
mod usage_query;
mod usage_retention;
mod usage_rollup;
#[cfg(test)]
mod usage_tests;
mod users;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::watch;

pub use audit::{audit_scope, AuditEvent, AuditQuery, PendingAudit};
pub use billing::{Account, LedgerEntry, LedgerQuery, NewLedgerEntry, StoredPrice};
pub use budgets::{Budget, BudgetAlert};
pub use cache_policies::{CachePolicyRow, CacheScope, CacheSettings};
pub use console::CodeBatchRow;
pub use dp_groups::{dp_token_hash, ActiveDpToken, DpGroup, DpToken, DP_GROUP_PREFIX};
pub use guardrails::{Guardrail, GuardrailAttachment, NewGuardrail};
pub use keys::{CallerKey, NewCallerKey};
pub use leases::LeaseGrant;
pub use models::{Model, NewModel};
pub use providers::{NewProvider, Provider};
pub use rate_limits::{
    EffectiveRateLimit, LimitScope, RateLimitRow, RateLimitTierRow, RateLimitValues,
};
pub use routes::{NewRouteTarget, ProviderHealthRow, RouteTarget, RouteView, StoredRoutePolicy};
pub use snapshot_data::{ConfigData, ProviderWithSecret, TenantData};
pub use tenants::Tenant;
pub use usage::{GuardrailVerdictRow, UsageAttempt, UsageFilter, UsageRecord, UsageSummaryRow};
pub use usage_query::{
    Dimensions, RequestCursor, RequestFilter, RollupCursor, RollupQuery, RollupRow, TimeBucket,
};
pub use usage_rollup::{hour_floor, UsageTotals, HOUR_MS};
pub use users::{NewUser, User, UserCredentials};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Errors of the store. Messages name objects by the caller-supplied id or
/// name only; they never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    Invalid(String),
    /// The object is referenced by others and cannot be deleted.
    #[error("{0}")]
    InUse(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Maps a unique-constraint violation to `AlreadyExists(what)`.
fn unique_or_db(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists(what()),
        _ => StoreError::Db(e),
    }
}

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    changes: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// `sqlite://` URL of a database file, created when missing.
pub fn sqlite_url(path: &std::path::Path) -> String {
    use sqlx::ConnectOptions as _;
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .to_url_lossy()
        .to_string()
}

impl Store {
    /// Connects, enables WAL on SQLite and runs the migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        let opts = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            // SQLite serialises writers anyway; a few readers are enough.
            .max_connections(if is_sqlite { 4 } else { 10 })
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        if is_sqlite {
            // Persistent in the file: readers no longer block the writer.
            // (Busy timeout 5 s and foreign keys are sqlx-sqlite defaults.)
            sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_optional(&pool)
                .await?;
        }
        MIGRATOR.run(&pool).await?;
        let version = read_version(&pool).await?;
        let (changes, _) = watch::channel(version);
        Ok(Self {
            pool,
            changes: Arc::new(changes),
        })
    }

    /// Follows committed configuration versions.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The committed configuration version.
    pub async fn config_version(&self) -> StoreResult<u64> {
        read_version(&self.pool).await
    }

    /// Closes the pool after in-flight queries finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    #[cfg(test)]
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a configuration write: the transaction has already bumped the
    /// version. Dropping it without [`Store::commit_config_change`] rolls back.
    async fn begin_config_change(&self) -> StoreResult<ConfigChange> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE config_version SET version = version + 1 WHERE id = $1")
            .bind(1_i64)
            .execute(&mut *tx)
            .await?;
        let version = sqlx::query("SELECT version FROM config_version WHERE id = $1")
            .bind(1_i64)
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>(0)?;
        Ok(ConfigChange {
            tx,
            version: u64::try_from(version).unwrap_or(0),
        })
    }

    /// Commits and tells the broadcaster about the new version.
    async fn commit_config_change(&self, mut change: ConfigChange) -> StoreResult<u64> {
        let version = change.version;
        // The admin call's audit event commits with its change (audit.rs).
        audit::write_pending_in(&mut change.tx).await?;
        change.tx.commit().await?;
        self.changes.send_if_modified(|v| {
            if version > *v {
                *v = version;
                true
            } else {
                false
            }
        });
        Ok(version)
    }
}

struct ConfigChange {
    tx: Transaction<'static, Any>,
    version: u64,
}

async fn read_version<'e, E>(exec: E) -> StoreResult<u64>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let v: i64 = sqlx::query("SELECT version FROM config_version WHERE id = $1")
        .bind(1_i64)
        .fetch_one(exec)
        .await?
        .try_get(0)?;
    Ok(u64::try_from(v).unwrap_or(0))
}

fn to_bool(v: i64) -> bool {
    v != 0
}

fn from_bool(v: bool) -> i64 {
    i64::from(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod test_support {
    use super::*;

    /// A store on a fresh SQLite file; keep the TempDir alive.
    pub async fn temp_store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&sqlite_url(&dir.path().join("t.db")))
            .await
            .unwrap();
        (store, dir)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::test_support::temp_store;
    use super::*;

    #[tokio::test]
    async fn sqlite_accepts_dollar_placeholders_in_any_order() {
        let (store, _dir) = temp_store().await;
        // $2 appears before $1 and $1 twice: binding is by number, not position.
        let row = sqlx::query("SELECT $2 || '-' || $1 || '-' || $1 AS s, $3 + 1 AS n")
            .bind("a")
            .bind("b")
            .bind(41_i64)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(row.try_get::<String, _>("s").unwrap(), "b-a-a");
        assert_eq!(row.try_get::<i64, _>("n").unwrap(), 42);
    }

    #[tokio::test]
    async fn wal_mode_and_initial_version() {
        let (store, _dir) = temp_store().await;
        let mode: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(store.config_version().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn rolled_back_change_does_not_bump_version() {
        let (store, _dir) = temp_store().await;
        let change = store.begin_config_change().await.unwrap();
        assert_eq!(change.version, 2);
        drop(change);
        assert_eq!(store.config_version().await.unwrap(), 1);
        let mut rx = store.subscribe_changes();
        let change = store.begin_config_change().await.unwrap();
        assert_eq!(store.commit_config_change(change).await.unwrap(), 2);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 2);
    }
}
