//! SQL stores behind the `Store` port: PostgreSQL for production and several replicas, SQLite embedded as the
//! zero-setup default. Each runs on its own sqlx driver; the statements are shared plain SQL, so both behave the
//! same and pass one contract test suite (tests/store_contract.rs).
//!
//! - `postgres`, `sqlite`: the backend adapters — connecting, migrations, how values are bound (NUMERIC,
//!   TIMESTAMPTZ and JSONB natively on PostgreSQL; decimal text, epoch milliseconds and JSON text on SQLite) and
//!   what only one engine does (PostgreSQL's advisory lock and array-bound event batches).
//! - `query`: a statement and its arguments, run on either driver; `catalogue`: every statement, prepared
//!   against both schemas by a test.
//! - `dialect`: which backend a URL names; `codec`: rows back to domain values.
//! - `job_ledger`, `market_data`, `trading`, `records`, `leases`, `events`, `deliveries`: the statements, by
//!   what they record.
//! - `book`: which mode and venue a database's orders, fills and positions belong to.
//! - `unit_of_work`: one transaction holding writes that belong together, with their events appended at commit.
//! - `port`: the `Store` trait implementation, delegating to the above.

mod book;
mod catalogue;
mod codec;
mod deliveries;
mod dialect;
mod errors;
mod events;
mod job_ledger;
mod leases;
mod market_data;
mod port;
mod postgres;
mod query;
mod records;
mod sql_store;
mod sqlite;
mod trading;
mod unit_of_work;

pub use book::BookOwner;
pub use dialect::Backend;
pub use records::Heartbeat;
pub use sql_store::{PoolSettings, SqlStore};
