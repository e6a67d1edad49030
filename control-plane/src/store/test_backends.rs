//! Store tests run the same cases on every backend: SQLite always, and
//! Postgres when `TOLLGATE_TEST_POSTGRES_URL` points at a real server
//! (scripts/test.sh starts one). Each Postgres case gets a fresh database,
//! so cases never see each other's rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::{Connection, Executor};

use super::{sqlite_url, Store};

pub const POSTGRES_ENV: &str = "TOLLGATE_TEST_POSTGRES_URL";

/// A store under test; dropping it leaves the (throwaway) data behind.
pub struct TestStore {
    pub backend: &'static str,
    pub store: Store,
    /// Where `store` connects: a second `Store::connect(url)` is another
    /// replica over the same database.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{db}{query}")
}

async fn fresh_postgres(url: &str) -> (Store, String) {
    let db = format!("tg_test_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .expect("connecting to TOLLGATE_TEST_POSTGRES_URL");
    admin
        .execute(format!("CREATE DATABASE {db}").as_str())
        .await
        .expect("creating a test database");
    admin.close().await.ok();
    let url = with_database(url, &db);
    (Store::connect(&url).await.unwrap(), url)
}

/// One fresh store per available backend.
pub async fn test_stores() -> Vec<TestStore> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_at = sqlite_url(&dir.path().join("t.db"));
    let sqlite = Store::connect(&sqlite_at).await.unwrap();
    let mut stores = vec![TestStore {
        backend: "sqlite",
        store: sqlite,
        url: sqlite_at,
        _dir: Some(dir),
    }];
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => {
            let (store, url) = fresh_postgres(&url).await;
            stores.push(TestStore {
                backend: "postgres",
                store,
                url,
                _dir: None,
            })
        }
        _ => eprintln!("{POSTGRES_ENV} not set: store case runs on SQLite only"),
    }
    stores
}

#[test]
fn database_name_is_replaced() {
    assert_eq!(
        with_database("postgres://u:p@127.0.0.1:5433/postgres", "x"),
        "postgres://u:p@127.0.0.1:5433/x"
    );
    assert_eq!(
        with_database("postgres://u@h:1/postgres?sslmode=disable", "x"),
        "postgres://u@h:1/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
}
