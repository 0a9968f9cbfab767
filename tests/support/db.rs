//! Fresh, isolated databases for end-to-end tests: a PostgreSQL database per test (created on the local server,
//! dropped when the guard drops) and a SQLite file in a temporary directory. PostgreSQL is never skipped: if the
//! server is down the test fails and says how to start it.

// Shared with the pipeline and scheduler tests; not every helper is used by every test module.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use mcbot::store::{Backend, SqlStore};
use sqlx::{Connection, Executor, PgConnection};
use tempfile::TempDir;

/// Environment variable that overrides the PostgreSQL admin URL used to create test databases.
pub const PG_ADMIN_URL_ENV: &str = "MCBOT_TEST_PG_URL";
/// The admin URL when the variable is unset: the local server with trust auth.
pub const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The admin URL test databases are created from.
pub fn pg_admin_url() -> String {
    std::env::var(PG_ADMIN_URL_ENV).unwrap_or_else(|_| DEFAULT_PG_ADMIN_URL.to_owned())
}

/// A PostgreSQL database that exists for one test; dropped (forcibly, best effort) when this guard drops, even if
/// the test panicked.
#[derive(Debug)]
pub struct PgTestDb {
    url: String,
    name: String,
    admin_url: String,
}

impl PgTestDb {
    /// The URL of the fresh database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database name (`mcbot_test_<pid>_<nanos>_<n>`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside any async context we could await in; a helper thread with its own runtime does it.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str()).await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// Creates a fresh, empty PostgreSQL database and returns its guard. Panics (failing the test) with instructions
/// when the server is unreachable.
pub async fn fresh_pg_url() -> PgTestDb {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let admin_url = pg_admin_url();
    let mut conn = match PgConnection::connect(&admin_url).await {
        Ok(conn) => conn,
        Err(e) => panic!(
            "PostgreSQL is required by the store tests and is not reachable at {admin_url} ({e}).\n\
             Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
             or point {PG_ADMIN_URL_ENV} at a server where this user may CREATE DATABASE."
        ),
    };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = format!("mcbot_test_{}_{nanos}_{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name} via {admin_url}: {e}"));
    let _ = conn.close().await;
    PgTestDb { url: with_database(&admin_url, &name), name, admin_url }
}

/// `admin_url` with its database name replaced by `name`, keeping user, host, port and query parameters.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

/// A SQLite database file in a temporary directory, deleted with the guard.
#[derive(Debug)]
pub struct SqliteTestDb {
    dir: TempDir,
    url: String,
}

impl SqliteTestDb {
    /// The `sqlite://.../mcbot.db?mode=rwc` URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The temporary data directory holding the file.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// A fresh SQLite location (the file is created on first connect), as the bot's embedded default would use.
pub fn fresh_sqlite_url() -> SqliteTestDb {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    let url = SqlStore::embedded_url(dir.path());
    SqliteTestDb { dir, url }
}

/// Keeps a test database alive for as long as the store that uses it.
#[derive(Debug)]
pub enum DbGuard {
    /// A PostgreSQL database, dropped on drop.
    Postgres(PgTestDb),
    /// A SQLite file, deleted on drop.
    Sqlite(SqliteTestDb),
}

/// A migrated store on a fresh database of either backend. Fields drop in order: the store closes before the
/// database goes away.
#[derive(Debug)]
pub struct TestStore {
    /// The store under test.
    pub store: SqlStore,
    /// Which engine.
    pub backend: Backend,
    /// The database URL, for a second connection (raw SQL, a second replica).
    pub url: String,
    /// The database's lifetime.
    pub guard: DbGuard,
}

/// A migrated store on a fresh database of `backend`.
pub async fn test_store(backend: Backend) -> TestStore {
    let guard = match backend {
        Backend::Postgres => DbGuard::Postgres(fresh_pg_url().await),
        Backend::Sqlite => DbGuard::Sqlite(fresh_sqlite_url()),
    };
    let url = match &guard {
        DbGuard::Postgres(db) => db.url().to_owned(),
        DbGuard::Sqlite(db) => db.url().to_owned(),
    };
    let store = SqlStore::open(&url).await.unwrap_or_else(|e| panic!("cannot open the {backend:?} test store: {e}"));
    TestStore { store, backend, url, guard }
}

#[test]
fn database_name_is_swapped_in_the_url() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(with_database("postgres://u:p@h/db?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
    assert_eq!(with_database("postgresql://h:5432", "x"), "postgresql://h:5432/x");
}
