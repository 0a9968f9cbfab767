//! SQL stores behind the `Store` port: PostgreSQL for production and several replicas, SQLite embedded as the
//! zero-setup default. One implementation over the sqlx `Any` driver serves both, so both behave the same and
//! pass one contract test suite (tests/store_contract.rs).
//!
//! - `dialect`: which backend a URL names; statements are written once in PostgreSQL syntax and rewritten for
//!   SQLite by dropping the `::type` casts.
//! - `codec`: decimals as exact text, times as epoch milliseconds, rows back to domain values.
//! - `job_ledger`, `market_data`, `trading`, `records`, `leases`, `events`, `deliveries`: the statements, by what they record.
//! - `unit_of_work`: one transaction holding writes that belong together, with their events appended at commit.
//! - `port`: the `Store` trait implementation, delegating to the above.

mod codec;
mod deliveries;
mod dialect;
mod errors;
mod events;
mod job_ledger;
mod leases;
mod market_data;
mod port;
mod records;
mod sql_store;
mod trading;
mod unit_of_work;

pub use dialect::Backend;
pub use records::Heartbeat;
pub use sql_store::{PoolSettings, SqlStore};
