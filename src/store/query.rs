//! A statement with its arguments, run on either backend's native driver.
//!
//! Statements are plain SQL that both engines accept (no casts, `$n` placeholders); what differs is how a value
//! travels, and that is each backend adapter's business: [`super::postgres`] binds money as `NUMERIC`, instants as
//! `TIMESTAMPTZ` and JSON as `JSONB`; [`super::sqlite`] binds exact decimal text, epoch milliseconds and JSON text.
//! An [`Arg`] carries the domain value unchanged until the adapter binds it.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use mcbot_stages::domain::Decimal;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Postgres, Sqlite, Transaction};

use super::dialect::Backend;

/// A statement fixed at compile time, with the backend it is limited to (`None`: both). Every one is listed in
/// the catalogue, so a test prepares each against both schemas.
pub(crate) struct Sql {
    pub(crate) text: &'static str,
    pub(crate) only: Option<Backend>,
}

impl Sql {
    /// A statement both engines run.
    pub(crate) const fn new(text: &'static str) -> Self {
        Self { text, only: None }
    }

    /// A statement only PostgreSQL runs (advisory locks, arrays).
    pub(crate) const fn postgres(text: &'static str) -> Self {
        Self { text, only: Some(Backend::Postgres) }
    }

    /// A statement only SQLite runs (its JSON table functions).
    pub(crate) const fn sqlite(text: &'static str) -> Self {
        Self { text, only: Some(Backend::Sqlite) }
    }
}

/// One bound value, typed by what it means rather than by how a driver stores it.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(bool),
    Dec(Option<Decimal>),
    Time(Option<DateTime<Utc>>),
    Json(Option<serde_json::Value>),
}

macro_rules! arg_from {
    ($($t:ty => |$v:ident| $e:expr;)*) => {$(
        impl From<$t> for Arg {
            fn from($v: $t) -> Self {
                $e
            }
        }
    )*};
}

arg_from! {
    &str => |v| Arg::Text(Some(v.to_owned()));
    String => |v| Arg::Text(Some(v));
    Option<String> => |v| Arg::Text(v);
    Option<&str> => |v| Arg::Text(v.map(str::to_owned));
    i64 => |v| Arg::Int(Some(v));
    Option<i64> => |v| Arg::Int(v);
    bool => |v| Arg::Bool(v);
    Decimal => |v| Arg::Dec(Some(v));
    Option<Decimal> => |v| Arg::Dec(v);
    DateTime<Utc> => |v| Arg::Time(Some(v));
    Option<DateTime<Utc>> => |v| Arg::Time(v);
    serde_json::Value => |v| Arg::Json(Some(v));
    Option<serde_json::Value> => |v| Arg::Json(v);
}

/// The pool of one backend.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Pg(PgPool),
    Lite(SqlitePool),
}

/// An open transaction of one backend.
pub(crate) enum Tx {
    Pg(Transaction<'static, Postgres>),
    Lite(Transaction<'static, Sqlite>),
}

/// A result row of one backend; [`super::codec::Cols`] reads it column by column.
pub(crate) enum Row {
    Pg(PgRow),
    Lite(SqliteRow),
}

/// Where a statement runs: any connection of the pool, or inside a transaction.
pub(crate) enum On<'a> {
    Pool(&'a Pool),
    Tx(&'a mut Tx),
}

impl<'a> From<&'a Pool> for On<'a> {
    fn from(p: &'a Pool) -> Self {
        On::Pool(p)
    }
}

impl<'a> From<&'a mut Tx> for On<'a> {
    fn from(t: &'a mut Tx) -> Self {
        On::Tx(t)
    }
}

/// A statement and its arguments, ready to run.
pub(crate) struct Q {
    sql: Cow<'static, str>,
    args: Vec<Arg>,
    /// Whether the prepared statement is kept in the connection's cache.
    persistent: bool,
}

impl Q {
    /// A fixed statement.
    pub(crate) fn fixed(sql: &'static Sql) -> Self {
        Self { sql: Cow::Borrowed(sql.text), args: Vec::new(), persistent: true }
    }

    /// A statement built at run time (a variable number of rows or filters).
    pub(crate) fn built(sql: String) -> Self {
        Self { sql: Cow::Owned(sql), args: Vec::with_capacity(16), persistent: true }
    }

    /// Binds the next `$n`.
    pub(crate) fn bind(mut self, v: impl Into<Arg>) -> Self {
        self.args.push(v.into());
        self
    }

    /// Keeps the prepared statement in the cache or not: statements whose shape rarely recurs would crowd the
    /// hot ones out.
    pub(crate) fn persistent(mut self, keep: bool) -> Self {
        self.persistent = keep;
        self
    }

    /// Runs the statement; the number of rows it changed.
    pub(crate) async fn execute<'a>(self, on: impl Into<On<'a>>) -> Result<u64, sqlx::Error> {
        let Q { sql, args, persistent } = self;
        Ok(match on.into() {
            On::Pool(Pool::Pg(p)) => super::postgres::query(&sql, args, persistent).execute(p).await?.rows_affected(),
            On::Tx(Tx::Pg(t)) => {
                super::postgres::query(&sql, args, persistent).execute(&mut **t).await?.rows_affected()
            }
            On::Pool(Pool::Lite(p)) => super::sqlite::query(&sql, args, persistent).execute(p).await?.rows_affected(),
            On::Tx(Tx::Lite(t)) => {
                super::sqlite::query(&sql, args, persistent).execute(&mut **t).await?.rows_affected()
            }
        })
    }

    /// Every row the statement returns.
    pub(crate) async fn fetch_all<'a>(self, on: impl Into<On<'a>>) -> Result<Vec<Row>, sqlx::Error> {
        let Q { sql, args, persistent } = self;
        Ok(match on.into() {
            On::Pool(Pool::Pg(p)) => pg_rows(super::postgres::query(&sql, args, persistent).fetch_all(p).await?),
            On::Tx(Tx::Pg(t)) => pg_rows(super::postgres::query(&sql, args, persistent).fetch_all(&mut **t).await?),
            On::Pool(Pool::Lite(p)) => lite_rows(super::sqlite::query(&sql, args, persistent).fetch_all(p).await?),
            On::Tx(Tx::Lite(t)) => lite_rows(super::sqlite::query(&sql, args, persistent).fetch_all(&mut **t).await?),
        })
    }

    /// The first row, if any.
    pub(crate) async fn fetch_optional<'a>(self, on: impl Into<On<'a>>) -> Result<Option<Row>, sqlx::Error> {
        let Q { sql, args, persistent } = self;
        Ok(match on.into() {
            On::Pool(Pool::Pg(p)) => {
                super::postgres::query(&sql, args, persistent).fetch_optional(p).await?.map(Row::Pg)
            }
            On::Tx(Tx::Pg(t)) => {
                super::postgres::query(&sql, args, persistent).fetch_optional(&mut **t).await?.map(Row::Pg)
            }
            On::Pool(Pool::Lite(p)) => {
                super::sqlite::query(&sql, args, persistent).fetch_optional(p).await?.map(Row::Lite)
            }
            On::Tx(Tx::Lite(t)) => {
                super::sqlite::query(&sql, args, persistent).fetch_optional(&mut **t).await?.map(Row::Lite)
            }
        })
    }
}

fn pg_rows(rows: Vec<PgRow>) -> Vec<Row> {
    rows.into_iter().map(Row::Pg).collect()
}

fn lite_rows(rows: Vec<SqliteRow>) -> Vec<Row> {
    rows.into_iter().map(Row::Lite).collect()
}
