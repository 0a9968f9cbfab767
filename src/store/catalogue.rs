//! Every statement the store runs, listed in one place so each can be prepared against a real schema of each
//! backend. sqlx's compile-time checked queries serve one database per crate; this store has two, so instead a
//! test (and `mcbot config check` against a deployment's database) prepares them all: a renamed column or a
//! statement one engine cannot parse fails there, not at 3 a.m. in the trading cycle.

use mcbot_stages::ports::StoreError;
use sqlx::{Connection, Executor};

use super::SqlStore;
use super::dialect::Backend;
use super::query::{Pool, Sql};
use super::{
    book, deliveries, events, job_ledger, leases, market_data, port, postgres, records, trading, unit_of_work,
};

/// The statement texts for `backend`: the fixed ones and an example of each built at run time.
fn statements(backend: Backend) -> Vec<String> {
    let fixed: Vec<&Sql> = [
        book::STATEMENTS,
        deliveries::STATEMENTS,
        events::STATEMENTS,
        job_ledger::STATEMENTS,
        leases::STATEMENTS,
        market_data::STATEMENTS,
        port::STATEMENTS,
        records::STATEMENTS,
        trading::STATEMENTS,
        unit_of_work::STATEMENTS,
        &[&postgres::LOCK_EVENTS, &postgres::APPEND_EVENTS],
    ]
    .concat();
    let fixed = fixed.into_iter().map(|s| (s.only, s.text.to_owned()));
    let built = events::built_examples().into_iter().chain(market_data::built_examples());
    fixed.chain(built).filter(|(only, _)| only.is_none_or(|b| b == backend)).map(|(_, text)| text).collect()
}

impl SqlStore {
    /// Prepares every statement this build runs against the connected database; the number prepared. A
    /// statement the schema does not support fails as `StoreError::Schema` with the statement's text, so a
    /// deployment whose database was altered by hand, or a build whose SQL drifted from its migrations, is caught
    /// before it trades.
    pub async fn check_statements(&self) -> Result<usize, StoreError> {
        let all = statements(self.backend);
        let fail = |sql: &str, e: sqlx::Error| {
            StoreError::Schema(format!("{} cannot prepare {sql:?}: {e}", self.backend.name()))
        };
        // On one connection whose statement cache is emptied first: a statement prepared before the schema
        // changed would otherwise be answered from the cache.
        match &self.pool {
            Pool::Pg(p) => {
                let mut conn = p.acquire().await.map_err(self.err("check_statements"))?;
                conn.clear_cached_statements().await.map_err(self.err("check_statements"))?;
                for sql in &all {
                    conn.prepare(sql.as_str()).await.map_err(|e| fail(sql, e))?;
                }
            }
            Pool::Lite(p) => {
                let mut conn = p.acquire().await.map_err(self.err("check_statements"))?;
                conn.clear_cached_statements().await.map_err(self.err("check_statements"))?;
                // SQLite prepares against the schema the connection last loaded; reading the schema table
                // reloads it if another connection changed it.
                conn.execute("SELECT count(*) FROM sqlite_schema").await.map_err(self.err("check_statements"))?;
                for sql in &all {
                    conn.prepare(sql.as_str()).await.map_err(|e| fail(sql, e))?;
                }
            }
        }
        Ok(all.len())
    }
}
