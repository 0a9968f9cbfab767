//! Sorting sqlx errors into the port's [`StoreError`] by what the caller does next: retry later (`Unavailable`),
//! stop and call a human (`Corrupt`), or fix the deployment (`Schema`).

use mcbot_stages::ports::StoreError;
use sqlx::error::DatabaseError;

use super::dialect::Backend;

/// Maps an sqlx error raised while doing `op` on `backend`.
pub(crate) fn map_sqlx(backend: Backend, op: &str, e: sqlx::Error) -> StoreError {
    let msg = format!("{} {op}: {e}", backend.name());
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Configuration(_) => StoreError::Unavailable(msg),
        sqlx::Error::Database(db) => match classify_database(backend, db.as_ref()) {
            Class::Transient => StoreError::Unavailable(msg),
            Class::Schema => StoreError::Schema(msg),
            Class::Data => StoreError::Corrupt(msg),
        },
        sqlx::Error::Migrate(_) | sqlx::Error::ColumnNotFound(_) | sqlx::Error::AnyDriverError(_) => {
            StoreError::Schema(msg)
        }
        _ => StoreError::Corrupt(msg),
    }
}

/// What a server-side error means for the caller.
enum Class {
    /// Connection lost, locked, out of resources, serialisation conflict: the same call may succeed later.
    Transient,
    /// Missing table or column, syntax: the schema is not what this build expects.
    Schema,
    /// Constraint or data errors: the stored data or the request is wrong; retrying will not help.
    Data,
}

fn classify_database(backend: Backend, db: &dyn DatabaseError) -> Class {
    let code = db.code().map(std::borrow::Cow::into_owned).unwrap_or_default();
    match backend {
        // SQLSTATE classes: 08 connection, 53 resources, 57 operator intervention, 58 system, 40 rollback
        // (serialisation failure, deadlock), 55P03 lock not available; 42 syntax/undefined object, 3F schema.
        Backend::Postgres => match code.get(..2) {
            Some("08" | "53" | "57" | "58" | "40") => Class::Transient,
            _ if code == "55P03" => Class::Transient,
            Some("42" | "3F" | "0A") => Class::Schema,
            _ => Class::Data,
        },
        // Extended result codes; the low byte is the primary code: 5 BUSY, 6 LOCKED, 7 NOMEM, 8 READONLY,
        // 10 IOERR, 13 FULL, 14 CANTOPEN, 15 PROTOCOL; 1 ERROR (no such table, syntax), 17 SCHEMA.
        Backend::Sqlite => match code.parse::<u32>().map(|c| c & 0xff) {
            Ok(5 | 6 | 7 | 8 | 10 | 13 | 14 | 15) => Class::Transient,
            Ok(1 | 17) => Class::Schema,
            _ => Class::Data,
        },
    }
}
