//! Conversions at the database edge: domain values to bind parameters, and row columns back to domain values.
//!
//! Decimals travel as their exact decimal text, times as epoch milliseconds, JSON as text. Anything that does not
//! parse back is reported as [`StoreError::Corrupt`] naming the table and column, so a human knows where to look.

use std::fmt::Display;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use mcbot_stages::domain::{Decimal, Symbol};
use mcbot_stages::ports::StoreError;
use sqlx::Row;
use sqlx::any::AnyRow;

/// Epoch milliseconds, the stored form of every instant (the `Any` driver carries no date types).
pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Exact decimal text, the bound form of every amount (`NUMERIC` in PostgreSQL via a cast, `TEXT` in SQLite).
pub(crate) fn dec(d: Decimal) -> String {
    d.to_string()
}

/// Optional [`dec`].
pub(crate) fn opt_dec(d: Option<Decimal>) -> Option<String> {
    d.map(dec)
}

/// JSON text for a `JSONB`/`TEXT` column. A `serde_json::Value` always serialises; the fallback keeps the
/// signature infallible without panicking.
pub(crate) fn json_text(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// Free text for a `TEXT` column with NUL characters replaced: PostgreSQL refuses NUL in text, and an error
/// message quoting an exchange's body must not make the ledger write itself fail.
pub(crate) fn clean(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// Reads the columns of one row of `table`, turning every failure into a `Corrupt` error that names the column.
pub(crate) struct Cols<'r> {
    row: &'r AnyRow,
    table: &'static str,
}

impl<'r> Cols<'r> {
    /// Wraps a row read from `table`.
    pub(crate) fn new(row: &'r AnyRow, table: &'static str) -> Self {
        Self { row, table }
    }

    /// The error for a column that holds something unusable.
    pub(crate) fn corrupt(&self, col: &str, what: impl Display) -> StoreError {
        StoreError::Corrupt(format!("{}.{col}: {what}", self.table))
    }

    /// A non-null text column.
    pub(crate) fn text(&self, col: &str) -> Result<String, StoreError> {
        self.opt_text(col)?.ok_or_else(|| self.corrupt(col, "unexpected NULL"))
    }

    /// A nullable text column.
    pub(crate) fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        Ok(self.opt_str(col)?.map(str::to_owned))
    }

    /// A nullable text column, borrowed from the row: parsing needs no copy.
    fn opt_str(&self, col: &str) -> Result<Option<&'r str>, StoreError> {
        self.row.try_get::<Option<&'r str>, _>(col).map_err(|e| self.corrupt(col, e))
    }

    /// A non-null text column, borrowed from the row.
    fn str(&self, col: &str) -> Result<&'r str, StoreError> {
        self.opt_str(col)?.ok_or_else(|| self.corrupt(col, "unexpected NULL"))
    }

    /// A non-null integer column.
    pub(crate) fn int(&self, col: &str) -> Result<i64, StoreError> {
        self.opt_int(col)?.ok_or_else(|| self.corrupt(col, "unexpected NULL"))
    }

    /// A nullable integer column.
    pub(crate) fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        self.row.try_get::<Option<i64>, _>(col).map_err(|e| self.corrupt(col, e))
    }

    /// A boolean column: `BOOLEAN` in PostgreSQL, `INTEGER` 0/1 in SQLite.
    pub(crate) fn flag(&self, col: &str) -> Result<bool, StoreError> {
        match self.row.try_get::<bool, _>(col) {
            Ok(b) => Ok(b),
            Err(_) => self.int(col).map(|i| i != 0),
        }
    }

    /// A non-null decimal column (read as `col::text`).
    pub(crate) fn decimal(&self, col: &str) -> Result<Decimal, StoreError> {
        self.opt_decimal(col)?.ok_or_else(|| self.corrupt(col, "unexpected NULL"))
    }

    /// A nullable decimal column.
    pub(crate) fn opt_decimal(&self, col: &str) -> Result<Option<Decimal>, StoreError> {
        self.opt_str(col)?
            .map(|s| Decimal::from_str(s).map_err(|e| self.corrupt(col, format!("invalid decimal {s:?}: {e}"))))
            .transpose()
    }

    /// A non-null instant (epoch milliseconds).
    pub(crate) fn time(&self, col: &str) -> Result<DateTime<Utc>, StoreError> {
        self.opt_time(col)?.ok_or_else(|| self.corrupt(col, "unexpected NULL"))
    }

    /// A nullable instant.
    pub(crate) fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_int(col)?
            .map(|ms| {
                DateTime::from_timestamp_millis(ms).ok_or_else(|| self.corrupt(col, format!("time {ms} out of range")))
            })
            .transpose()
    }

    /// A non-null JSON column (read as `col::text`).
    pub(crate) fn json(&self, col: &str) -> Result<serde_json::Value, StoreError> {
        self.opt_json(col)?.ok_or_else(|| self.corrupt(col, "unexpected NULL"))
    }

    /// A nullable JSON column.
    pub(crate) fn opt_json(&self, col: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.opt_str(col)?
            .map(|s| serde_json::from_str(s).map_err(|e| self.corrupt(col, format!("invalid JSON: {e}"))))
            .transpose()
    }

    /// A symbol column, validated as at every other boundary.
    pub(crate) fn symbol(&self, col: &str) -> Result<Symbol, StoreError> {
        Symbol::new(self.str(col)?).map_err(|e| self.corrupt(col, e))
    }

    /// A column holding the stored name of an enum, parsed by `parse`.
    pub(crate) fn named<T>(&self, col: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, StoreError> {
        let s = self.str(col)?;
        parse(s).ok_or_else(|| self.corrupt(col, format!("unknown value {s:?}")))
    }
}
