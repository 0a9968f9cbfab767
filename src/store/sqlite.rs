//! The SQLite adapter, the embedded default: one file, no server. SQLite has no decimal, time or JSON types, so
//! money is stored as its exact decimal text, instants as epoch milliseconds (UTC) and JSON as text.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mcbot_stages::domain::Decimal;
use mcbot_stages::ports::StoreError;
use sqlx::migrate::Migrator;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite};

use super::query::Arg;
use super::sql_store::PoolSettings;

/// Schema of the SQLite backend, compiled into the binary.
pub(crate) static MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Opens a pool on the file (or in-memory database) the URL names. WAL lets readers run beside the one writer;
/// `synchronous=NORMAL` is durable across process crashes in WAL mode (only a power cut can lose the last
/// commits) and keeps a commit cheap; the busy timeout makes concurrent writers queue instead of failing; foreign
/// keys are enforced.
pub(crate) async fn connect(url: &str, settings: &PoolSettings, in_memory: bool) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    // An in-memory database lives and dies with its one connection: a second connection would see an empty
    // database without the schema. A file connection is a handle in-process and cannot go stale.
    let mut pool = SqlitePoolOptions::new()
        .max_connections(if in_memory { 1 } else { settings.max_connections.max(1) })
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(false);
    if in_memory {
        pool = pool.min_connections(1).idle_timeout(None).max_lifetime(None);
    }
    pool.connect_with(options).await
}

/// `sql` with `args` bound in their stored forms.
pub(crate) fn query(sql: &str, args: Vec<Arg>, persistent: bool) -> Query<'_, Sqlite, SqliteArguments<'_>> {
    let mut q = sqlx::query(sql).persistent(persistent);
    for a in args {
        q = match a {
            Arg::Text(v) => q.bind(v),
            Arg::Int(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Dec(v) => q.bind(v.map(|d| d.to_string())),
            Arg::Time(v) => q.bind(v.map(|t| t.timestamp_millis())),
            Arg::Json(v) => q.bind(v.map(|j| j.to_string())),
        };
    }
    q
}

/// A consistent copy of the database into a new file, taken while writers may be running (`VACUUM INTO`).
pub(crate) async fn vacuum_into(pool: &SqlitePool, file: &Path) -> Result<(), StoreError> {
    let target =
        file.to_str().ok_or_else(|| StoreError::Unavailable(format!("{} is not valid UTF-8", file.display())))?;
    let sql = format!("VACUUM INTO '{}'", target.replace('\'', "''"));
    sqlx::query(&sql)
        .execute(pool)
        .await
        .map(drop)
        .map_err(|e| StoreError::Unavailable(format!("backup to {}: {e}", file.display())))
}

/// Typed column reads for [`super::codec::Cols`]: the stored forms parsed back.
pub(crate) mod decode {
    use super::*;

    /// A decimal stored as text; `Err` carries the unparsable text.
    pub(crate) fn opt_decimal(row: &SqliteRow, col: &str) -> Result<Option<Result<Decimal, String>>, sqlx::Error> {
        Ok(row
            .try_get::<Option<&str>, _>(col)?
            .map(|s| Decimal::from_str(s).map_err(|e| format!("invalid decimal {s:?}: {e}"))))
    }

    /// An instant stored as epoch milliseconds; `Err` carries the out-of-range number.
    pub(crate) fn opt_time(row: &SqliteRow, col: &str) -> Result<Option<Result<DateTime<Utc>, String>>, sqlx::Error> {
        Ok(row
            .try_get::<Option<i64>, _>(col)?
            .map(|ms| DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("time {ms} out of range"))))
    }

    /// JSON stored as text; `Err` carries the parse error.
    pub(crate) fn opt_json(
        row: &SqliteRow,
        col: &str,
    ) -> Result<Option<Result<serde_json::Value, String>>, sqlx::Error> {
        Ok(row
            .try_get::<Option<&str>, _>(col)?
            .map(|s| serde_json::from_str(s).map_err(|e| format!("invalid JSON: {e}"))))
    }
}
