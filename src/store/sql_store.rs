//! The store handle: a connection pool of the URL's backend (PostgreSQL or SQLite, each on its native sqlx
//! driver) with that backend's embedded migrations. The `Store` port methods live in the sibling modules,
//! grouped by what they record.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mcbot_stages::ports::StoreError;

use super::dialect::{self, Backend};
use super::errors::map_sqlx;
use super::query::{Pool, Tx};
use super::{postgres, sqlite};

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
/// embedded default). The statements are shared; binding, decoding, locks and migrations are each backend's own
/// (`postgres`, `sqlite`). The contract tests run against both. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(crate) pool: Pool,
    pub(crate) backend: Backend,
    /// The SQLite file, for the migration lock and backups; `None` for PostgreSQL and in-memory databases.
    file: Option<PathBuf>,
    /// Wakes in-process event consumers after each commit that appended events.
    pub(crate) wake: tokio::sync::broadcast::Sender<mcbot_stages::ports::Committed>,
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
        let in_memory = backend == Backend::Sqlite && file.is_none();
        let pool = match backend {
            Backend::Postgres => postgres::connect(url, settings).await.map(Pool::Pg),
            Backend::Sqlite => sqlite::connect(url, settings, in_memory).await.map(Pool::Lite),
        }
        .map_err(|e| match map_sqlx(backend, "connect", e) {
            StoreError::Unavailable(m)
            | StoreError::Corrupt(m)
            | StoreError::Schema(m)
            | StoreError::Conflict(m)
            | StoreError::Fenced(m) => StoreError::Unavailable(format!("{m} (database {shown})")),
        })?;
        let (wake, _) = tokio::sync::broadcast::channel(64);
        Ok(Self { pool, backend, file, wake })
    }

    /// Opens a transaction on this backend.
    pub(crate) async fn begin_tx(&self) -> Result<Tx, StoreError> {
        match &self.pool {
            Pool::Pg(p) => p.begin().await.map(Tx::Pg),
            Pool::Lite(p) => p.begin().await.map(Tx::Lite),
        }
        .map_err(self.err("begin"))
    }

    /// Commits a transaction opened by [`SqlStore::begin_tx`].
    pub(crate) async fn commit_tx(&self, tx: Tx) -> Result<(), StoreError> {
        match tx {
            Tx::Pg(tx) => tx.commit().await,
            Tx::Lite(tx) => tx.commit().await,
        }
        .map_err(self.err("commit"))
    }

    /// Opens a transaction for a unit of work.
    pub(crate) async fn begin_sql(&self) -> Result<super::unit_of_work::SqlUnitOfWork, StoreError> {
        let tx = self.begin_tx().await?;
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
        // Several processes starting on a fresh SQLite file would each find no schema and each create it; the
        // losers fail with "table already exists". The migration lock makes them take turns, so every one sees
        // the finished schema. (PostgreSQL migrations take an advisory lock of their own.)
        let _turn = match self.file.clone() {
            Some(db) => Some(
                tokio::task::spawn_blocking(move || crate::db_lock::migration_lock(&db))
                    .await
                    .map_err(|e| StoreError::Schema(format!("migration lock: {e}")))?
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?,
            ),
            None => None,
        };
        match &self.pool {
            Pool::Pg(p) => postgres::MIGRATIONS.run(p).await,
            Pool::Lite(p) => sqlite::MIGRATIONS.run(p).await,
        }
        .map_err(|e| StoreError::Schema(format!("{} migrations: {e}", self.backend.name())))
    }

    /// The embedded database's file; `None` for PostgreSQL and in-memory databases.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Which engine this store talks to.
    pub fn kind(&self) -> Backend {
        self.backend
    }

    /// Closes every connection, waiting for running queries; for a clean shutdown (SQLite checkpoints its WAL).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Pg(p) => p.close().await,
            Pool::Lite(p) => p.close().await,
        }
    }

    /// A consistent copy of the embedded database into `file`, taken while the bot may be writing. PostgreSQL
    /// is backed up with its own tools (`pg_dump`), so it is refused there.
    pub async fn backup_into(&self, file: &Path) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Lite(p) => sqlite::vacuum_into(p, file).await,
            Pool::Pg(_) => Err(StoreError::Unavailable("a PostgreSQL database is backed up with pg_dump".into())),
        }
    }

    /// The error mapper for operation `op`.
    pub(crate) fn err(&self, op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError + use<> {
        let backend = self.backend;
        move |e| map_sqlx(backend, op, e)
    }
}
