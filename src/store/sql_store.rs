//! The store handle: one connection pool over the sqlx `Any` driver, for PostgreSQL or SQLite, with the
//! embedded migrations. The `Store` port methods live in the sibling modules, grouped by what they record.

use std::path::Path;
use std::time::Duration;

use mcbot_stages::ports::StoreError;
use sqlx::any::{AnyArguments, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Executor};

use super::dialect::{self, Backend, Sql};
use super::errors::map_sqlx;

/// Schema of the PostgreSQL backend, compiled into the binary.
static PG_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
/// Schema of the SQLite backend, compiled into the binary.
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Per-connection settings for SQLite: WAL lets readers run beside the one writer, `synchronous=NORMAL` is
/// durable across process crashes in WAL mode (only a power cut can lose the last commits) and keeps a commit
/// cheap, the busy timeout makes concurrent writers queue instead of failing, and foreign keys are enforced.
const SQLITE_PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;";

/// Connection pool sizing. The defaults suit one bot process; tests shorten the timeout to fail fast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections open at once. SQLite serialises writers anyway; a few connections let reads overlap.
    pub max_connections: u32,
    /// How long a call waits for a connection (including connecting) before it fails as `Unavailable`: this
    /// bounds how long a trading cycle can hang on a dead database before it fails closed.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self { max_connections: 4, acquire_timeout: Duration::from_secs(5) }
    }
}

/// The SQL implementation of the `Store` port, for PostgreSQL (production, several replicas) and SQLite (the
/// embedded default). One implementation keeps both backends behaving the same; the contract tests run against
/// both. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    /// Wakes in-process event consumers after each commit that appended events.
    pub(crate) wake: tokio::sync::broadcast::Sender<i64>,
}

/// The first bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Makes an SQLite file ready to open: its directory exists; a missing file is created, readable by its owner
/// only (trading records are nobody else's business), unless the URL opens read-only; an existing file must be
/// an SQLite database (else sqlx would fail each connection and the pool would only report a time-out).
fn prepare_sqlite_file(file: &Path, url: &str) -> Result<(), StoreError> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create database directory {}: {e}", dir.display())))?;
    }
    let read_only = url.split_once('?').is_some_and(|(_, q)| q.split('&').any(|kv| kv == "mode=ro"));
    match std::fs::File::open(file) {
        Ok(mut f) => {
            let mut head = [0u8; 16];
            let n = std::io::Read::read(&mut f, &mut head).unwrap_or(0);
            if n > 0 && (n < head.len() || &head != SQLITE_HEADER) {
                return Err(StoreError::Corrupt(format!("{} is not an SQLite database", file.display())));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !read_only => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(false);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options
                .open(file)
                .map(drop)
                .map_err(|e| StoreError::Unavailable(format!("cannot create database file {}: {e}", file.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(StoreError::Unavailable(format!("database file {} does not exist (mode=ro)", file.display())))
        }
        Err(e) => Err(StoreError::Unavailable(format!("cannot open database file {}: {e}", file.display()))),
    }
}

impl SqlStore {
    /// The default embedded database, `sqlite://<data_dir>/mcbot.db?mode=rwc`: works with no setup at all.
    pub fn embedded_url(data_dir: &Path) -> String {
        dialect::embedded_url(data_dir)
    }

    /// The database file an `sqlite:` URL names; `None` for other backends and in-memory databases. Locks and
    /// backups of the embedded database need the file itself.
    pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
        match Backend::from_url(url) {
            Some(Backend::Sqlite) => dialect::sqlite_file(url),
            _ => None,
        }
    }

    /// Connects with default pool settings. See [`SqlStore::connect_with`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &PoolSettings::default()).await
    }

    /// Connects to `postgres://`, `postgresql://` or `sqlite:` URLs and checks the connection works. For SQLite the
    /// database file's directory is created if missing. Does not migrate: call [`SqlStore::migrate`].
    ///
    /// Errors: an unreachable database, and also a URL of any other scheme, are `StoreError::Unavailable` (the
    /// bot cannot run without its store either way, and both messages say what to fix; passwords are redacted).
    pub async fn connect_with(url: &str, settings: &PoolSettings) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let shown = dialect::redact_url(url);
        let backend = Backend::from_url(url).ok_or_else(|| {
            StoreError::Unavailable(format!(
                "unsupported database URL {shown:?}: expected sqlite:<path>, postgres://... or postgresql://..."
            ))
        })?;
        let file = if backend == Backend::Sqlite { dialect::sqlite_file(url) } else { None };
        if let Some(file) = &file {
            prepare_sqlite_file(file, url)?;
        }
        // An in-memory SQLite database lives and dies with its one connection: a second connection would see
        // an empty database without the schema.
        let in_memory = backend == Backend::Sqlite && file.is_none();
        let max_connections = if in_memory { 1 } else { settings.max_connections.max(1) };
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // A SQLite connection is a file handle in-process and cannot go stale; a PostgreSQL one can.
            .test_before_acquire(backend == Backend::Postgres);
        if in_memory {
            options = options.min_connections(1).idle_timeout(None).max_lifetime(None);
        }
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await.map_err(|e| match map_sqlx(backend, "connect", e) {
            StoreError::Unavailable(m)
            | StoreError::Corrupt(m)
            | StoreError::Schema(m)
            | StoreError::Conflict(m)
            | StoreError::Fenced(m) => StoreError::Unavailable(format!("{m} (database {shown})")),
        })?;
        let (wake, _) = tokio::sync::broadcast::channel(64);
        Ok(Self { pool, backend, wake })
    }

    /// Opens a transaction for a unit of work.
    pub(crate) async fn begin_sql(&self) -> Result<super::unit_of_work::SqlUnitOfWork, StoreError> {
        let tx = self.pool.begin().await.map_err(self.err("begin"))?;
        Ok(super::unit_of_work::SqlUnitOfWork {
            tx,
            backend: self.backend,
            events: Vec::new(),
            wake: self.wake.clone(),
        })
    }

    /// Connects and migrates: what start-up wants.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the embedded migrations that have not run yet; a no-op when the schema is current. Refuses (as
    /// `StoreError::Schema`) a database migrated by a newer build or whose applied migrations were edited.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Postgres => &PG_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        };
        // Several processes starting on a fresh SQLite file would each find no schema and each create it; the
        // losers fail with "table already exists". The migration lock makes them take turns, so every one sees
        // the finished schema. (PostgreSQL migrations take an advisory lock of their own.)
        let file = match self.backend {
            Backend::Sqlite => dialect::sqlite_file(self.pool.connect_options().database_url.as_str()),
            Backend::Postgres => None,
        };
        let _turn = match file {
            Some(db) => Some(
                tokio::task::spawn_blocking(move || crate::db_lock::migration_lock(&db))
                    .await
                    .map_err(|e| StoreError::Schema(format!("migration lock: {e}")))?
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?,
            ),
            None => None,
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Schema(format!("{} migrations: {e}", self.backend.name())))
    }

    /// Which engine this store talks to.
    pub fn kind(&self) -> Backend {
        self.backend
    }

    /// Closes every connection, waiting for running queries; for a clean shutdown (SQLite checkpoints its WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A fixed statement in this backend's dialect, ready for binding.
    pub(crate) fn query<'q>(&self, sql: &'static Sql) -> Query<'q, Any, AnyArguments<'q>> {
        sqlx::query(sql.text(self.backend))
    }

    /// The error mapper for operation `op`.
    pub(crate) fn err(&self, op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError + use<> {
        let backend = self.backend;
        move |e| map_sqlx(backend, op, e)
    }
}
