//! Conversions at the database edge: rows back to domain values, whichever backend they came from.
//!
//! PostgreSQL returns money, instants and JSON as themselves; SQLite returns their stored forms (decimal text,
//! epoch milliseconds, JSON text), which are parsed here. Anything that does not read back is reported as
//! [`StoreError::Corrupt`] naming the table and column, so a human knows where to look.

use std::fmt::Display;

use chrono::{DateTime, Utc};
use mcbot_stages::domain::{Decimal, Symbol};
use mcbot_stages::ports::StoreError;
use sqlx::Row as _;

use super::query::Row;
use super::{postgres, sqlite};

/// Free text for a `TEXT` column with NUL characters replaced: PostgreSQL refuses NUL in text, and an error
/// message quoting an exchange's body must not make the ledger write itself fail.
pub(crate) fn clean(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// Reads the columns of one row of `table`, turning every failure into a `Corrupt` error that names the column.
pub(crate) struct Cols<'r> {
    row: &'r Row,
    table: &'static str,
}

impl<'r> Cols<'r> {
    /// Wraps a row read from `table`.
    pub(crate) fn new(row: &'r Row, table: &'static str) -> Self {
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
        match self.row {
            Row::Pg(r) => r.try_get::<Option<&'r str>, _>(col),
            Row::Lite(r) => r.try_get::<Option<&'r str>, _>(col),
        }
        .map_err(|e| self.corrupt(col, e))
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
        match self.row {
            Row::Pg(r) => r.try_get::<Option<i64>, _>(col),
            Row::Lite(r) => r.try_get::<Option<i64>, _>(col),
        }
        .map_err(|e| self.corrupt(col, e))
    }

    /// A boolean column: `BOOLEAN` in PostgreSQL, `INTEGER` 0/1 in SQLite.
    pub(crate) fn flag(&self, col: &str) -> Result<bool, StoreError> {
        match self.row {
            Row::Pg(r) => r.try_get::<bool, _>(col),
            Row::Lite(r) => r.try_get::<bool, _>(col),
        }
        .map_err(|e| self.corrupt(col, e))
    }

    /// A non-null decimal column.
    pub(crate) fn decimal(&self, col: &str) -> Result<Decimal, StoreError> {
        self.opt_decimal(col)?.ok_or_else(|| self.corrupt(col, "unexpected NULL"))
    }

    /// A nullable decimal column.
    pub(crate) fn opt_decimal(&self, col: &str) -> Result<Option<Decimal>, StoreError> {
        match self.row {
            Row::Pg(r) => postgres::decode::opt_decimal(r, col).map_err(|e| self.corrupt(col, e)),
            Row::Lite(r) => self.parsed(col, sqlite::decode::opt_decimal(r, col)),
        }
    }

    /// A non-null instant.
    pub(crate) fn time(&self, col: &str) -> Result<DateTime<Utc>, StoreError> {
        self.opt_time(col)?.ok_or_else(|| self.corrupt(col, "unexpected NULL"))
    }

    /// A nullable instant.
    pub(crate) fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.row {
            Row::Pg(r) => postgres::decode::opt_time(r, col).map_err(|e| self.corrupt(col, e)),
            Row::Lite(r) => self.parsed(col, sqlite::decode::opt_time(r, col)),
        }
    }

    /// A non-null JSON column.
    pub(crate) fn json(&self, col: &str) -> Result<serde_json::Value, StoreError> {
        self.opt_json(col)?.ok_or_else(|| self.corrupt(col, "unexpected NULL"))
    }

    /// A nullable JSON column.
    pub(crate) fn opt_json(&self, col: &str) -> Result<Option<serde_json::Value>, StoreError> {
        match self.row {
            Row::Pg(r) => postgres::decode::opt_json(r, col).map_err(|e| self.corrupt(col, e)),
            Row::Lite(r) => self.parsed(col, sqlite::decode::opt_json(r, col)),
        }
    }

    /// A stored form read and parsed: either step failing is `Corrupt`, naming the column.
    fn parsed<T>(
        &self,
        col: &str,
        read: Result<Option<Result<T, String>>, sqlx::Error>,
    ) -> Result<Option<T>, StoreError> {
        read.map_err(|e| self.corrupt(col, e))?.map(|v| v.map_err(|e| self.corrupt(col, e))).transpose()
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
