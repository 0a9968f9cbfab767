//! The unit of work: one database transaction holding every write that belongs together, with the events that
//! report them appended at commit. Dropped without commit, the transaction rolls back and nothing is written.

use async_trait::async_trait;
use mcbot_stages::domain::{Fill, Order, Position, Symbol};
use mcbot_stages::ports::{
    BotState, Committed, EquitySnapshot, Event, NewEvent, RunFence, SignalRecord, StoreError, UnitOfWork,
};
use tokio::sync::broadcast;

use super::codec::clean;
use super::dialect::Backend;
use super::errors::map_sqlx;
use super::events;
use super::query::{Q, Sql, Tx};
use super::records::BOT_STATE_KEY;

static FENCE: Sql = Sql::new(
    "UPDATE job_runs SET claim_token = claim_token WHERE run_id = $1 AND claim_token = $2 AND status = 'running'",
);
static INSERT_ORDER: Sql = Sql::new(
    "INSERT INTO orders (client_order_id, run_id, symbol, side, qty, filled_qty, avg_price, status, \
     exchange_order_id, created_at, reason) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (client_order_id) DO NOTHING",
);
static UPDATE_ORDER: Sql = Sql::new(
    "UPDATE orders SET status = $2, filled_qty = $3, avg_price = $4, exchange_order_id = $5 \
     WHERE client_order_id = $1",
);
static INSERT_FILL: Sql = Sql::new(
    "INSERT INTO fills (symbol, trade_id, client_order_id, side, qty, price, fee, ts) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (symbol, trade_id) DO NOTHING",
);
static POSITION: Sql = Sql::new("SELECT symbol, qty, avg_price, realized_pnl FROM positions WHERE symbol = $1");
static SAVE_POSITION: Sql = Sql::new(
    "INSERT INTO positions (symbol, qty, avg_price, realized_pnl) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (symbol) DO UPDATE SET qty = excluded.qty, avg_price = excluded.avg_price, \
     realized_pnl = excluded.realized_pnl",
);
static UPSERT_EQUITY: Sql = Sql::new(
    "INSERT INTO equity_snapshots (ts, equity, cash) VALUES ($1, $2, $3) \
     ON CONFLICT (ts) DO UPDATE SET equity = excluded.equity, cash = excluded.cash",
);
static UPSERT_SIGNAL: Sql = Sql::new(
    "INSERT INTO signals (run_id, ts, symbol, strategy, target_weight, reason) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, symbol, strategy) \
     DO UPDATE SET ts = excluded.ts, target_weight = excluded.target_weight, reason = excluded.reason",
);
// Compare-and-set on the version: the first save inserts version 1; later ones replace only the version read.
pub(crate) static INSERT_STATE: Sql =
    Sql::new("INSERT INTO bot_state (key, value, version) VALUES ($1, $2, 1) ON CONFLICT (key) DO NOTHING");
static UPDATE_STATE: Sql =
    Sql::new("UPDATE bot_state SET value = $2, version = version + 1 WHERE key = $1 AND version = $3");

/// The fixed statements, for the catalogue.
pub(crate) static STATEMENTS: &[&Sql] = &[
    &FENCE,
    &INSERT_ORDER,
    &UPDATE_ORDER,
    &INSERT_FILL,
    &POSITION,
    &SAVE_POSITION,
    &UPSERT_EQUITY,
    &UPSERT_SIGNAL,
    &INSERT_STATE,
    &UPDATE_STATE,
];

/// A unit of work over one sqlx transaction.
pub(crate) struct SqlUnitOfWork {
    pub(crate) tx: Tx,
    pub(crate) backend: Backend,
    pub(crate) events: Vec<NewEvent>,
    pub(crate) wake: broadcast::Sender<Committed>,
}

impl SqlUnitOfWork {
    fn err(&self, op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError + use<> {
        let backend = self.backend;
        move |e| map_sqlx(backend, op, e)
    }
}

#[async_trait]
impl UnitOfWork for SqlUnitOfWork {
    async fn fence(&mut self, fence: &RunFence) -> Result<(), StoreError> {
        let q = Q::fixed(&FENCE).bind(fence.run_id.clone()).bind(fence.token.clone());
        let done = q.execute(&mut self.tx).await.map_err(self.err("fence"))?;
        if done == 0 {
            return Err(StoreError::Fenced(format!(
                "run {} is no longer claimed by this process: its writes are refused",
                fence.run_id
            )));
        }
        Ok(())
    }

    async fn insert_order(&mut self, o: &Order) -> Result<bool, StoreError> {
        let q = Q::fixed(&INSERT_ORDER)
            .bind(o.client_order_id.as_str().to_owned())
            .bind(o.run_id.clone())
            .bind(o.symbol.as_str().to_owned())
            .bind(o.side.as_str())
            .bind(o.qty)
            .bind(o.filled_qty)
            .bind(o.avg_price)
            .bind(o.status.as_str())
            .bind(o.exchange_order_id.clone())
            .bind(o.created_at)
            .bind(clean(&o.reason));
        let done = q.execute(&mut self.tx).await.map_err(self.err("insert_order"))?;
        Ok(done == 1)
    }

    /// Updating an order that was never inserted is a bug in the caller (every order is recorded before it is
    /// sent) and is reported as `Corrupt`.
    async fn update_order(&mut self, o: &Order) -> Result<(), StoreError> {
        let q = Q::fixed(&UPDATE_ORDER)
            .bind(o.client_order_id.as_str().to_owned())
            .bind(o.status.as_str())
            .bind(o.filled_qty)
            .bind(o.avg_price)
            .bind(o.exchange_order_id.clone());
        let done = q.execute(&mut self.tx).await.map_err(self.err("update_order"))?;
        if done == 0 {
            return Err(StoreError::Corrupt(format!("orders: no order {} to update", o.client_order_id)));
        }
        Ok(())
    }

    /// Trade ids are unique per symbol at Binance, so the key is (symbol, trade id).
    async fn insert_fill(&mut self, f: &Fill) -> Result<bool, StoreError> {
        let q = Q::fixed(&INSERT_FILL)
            .bind(f.symbol.as_str().to_owned())
            .bind(f.trade_id.clone())
            .bind(f.client_order_id.as_str().to_owned())
            .bind(f.side.as_str())
            .bind(f.qty)
            .bind(f.price)
            .bind(f.fee)
            .bind(f.ts);
        let done = q.execute(&mut self.tx).await.map_err(self.err("insert_fill"))?;
        Ok(done == 1)
    }

    async fn position(&mut self, symbol: &Symbol) -> Result<Option<Position>, StoreError> {
        let q = Q::fixed(&POSITION).bind(symbol.as_str().to_owned());
        let row = q.fetch_optional(&mut self.tx).await.map_err(self.err("position"))?;
        row.as_ref().map(super::trading::position_from_row).transpose()
    }

    async fn save_position(&mut self, p: &Position) -> Result<(), StoreError> {
        let q = Q::fixed(&SAVE_POSITION)
            .bind(p.symbol.as_str().to_owned())
            .bind(p.qty)
            .bind(p.avg_price)
            .bind(p.realized_pnl);
        q.execute(&mut self.tx).await.map_err(self.err("save_position"))?;
        Ok(())
    }

    async fn insert_equity(&mut self, s: &EquitySnapshot) -> Result<(), StoreError> {
        let q = Q::fixed(&UPSERT_EQUITY).bind(s.ts).bind(s.equity).bind(s.cash);
        q.execute(&mut self.tx).await.map_err(self.err("insert_equity"))?;
        Ok(())
    }

    /// One decision per (run, symbol, strategy): a retried run replaces its own earlier decision.
    async fn insert_signal(&mut self, s: &SignalRecord) -> Result<(), StoreError> {
        let q = Q::fixed(&UPSERT_SIGNAL)
            .bind(s.run_id.clone())
            .bind(s.ts)
            .bind(s.symbol.as_str().to_owned())
            .bind(s.strategy.clone())
            .bind(s.target_weight)
            .bind(clean(&s.reason));
        q.execute(&mut self.tx).await.map_err(self.err("insert_signal"))?;
        Ok(())
    }

    async fn save_state(&mut self, state: &BotState, expected_version: i64) -> Result<i64, StoreError> {
        let value = serde_json::to_value(state)
            .map_err(|e| StoreError::Corrupt(format!("bot_state.value: cannot serialise: {e}")))?;
        let done = if expected_version == 0 {
            let q = Q::fixed(&INSERT_STATE).bind(BOT_STATE_KEY).bind(value);
            q.execute(&mut self.tx).await.map_err(self.err("save_state"))?
        } else {
            let q = Q::fixed(&UPDATE_STATE).bind(BOT_STATE_KEY).bind(value).bind(expected_version);
            q.execute(&mut self.tx).await.map_err(self.err("save_state"))?
        };
        if done == 0 {
            return Err(StoreError::Conflict(format!(
                "bot state is no longer at version {expected_version}: another writer changed it"
            )));
        }
        Ok(expected_version + 1)
    }

    fn append(&mut self, event: NewEvent) {
        self.events.push(event);
    }

    async fn commit(mut self: Box<Self>) -> Result<Vec<i64>, StoreError> {
        let events = std::mem::take(&mut self.events);
        let ids = events::append(&mut self.tx, &events).await?;
        let backend = self.backend;
        match self.tx {
            Tx::Pg(tx) => tx.commit().await,
            Tx::Lite(tx) => tx.commit().await,
        }
        .map_err(|e| map_sqlx(backend, "commit", e))?;
        // Nobody listening is fine: consumers also poll.
        if !ids.is_empty() && self.wake.receiver_count() > 0 {
            let _ = self.wake.send(committed(backend, events, &ids));
        }
        Ok(ids)
    }
}

/// The committed events as [`super::SqlStore::read_events`] returns them: the message as stored, the time at the
/// backend's precision (microseconds on PostgreSQL, epoch milliseconds on SQLite).
fn committed(backend: Backend, events: Vec<NewEvent>, ids: &[i64]) -> Committed {
    use chrono::SubsecRound;
    events
        .into_iter()
        .zip(ids)
        .map(|(mut event, &id)| {
            event.message = clean(&event.message);
            event.ts = match backend {
                Backend::Postgres => event.ts.trunc_subsecs(6),
                Backend::Sqlite => {
                    chrono::DateTime::from_timestamp_millis(event.ts.timestamp_millis()).unwrap_or(event.ts)
                }
            };
            Event { id, event }
        })
        .collect()
}
