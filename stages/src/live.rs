//! The venue as mode live uses it: the real exchange behind two guards that sit on the order path itself.
//!
//! - **Dry runs.** The first N trading cycles after every start simulate their orders on the live book and
//!   send nothing: the order is recorded as not sent (rejected, with the price it would have filled at), so
//!   the records show what the bot would have done while the venue saw nothing.
//! - **API failures.** N consecutive failed calls trip the `api_failures` breaker (entries stop, exits still
//!   run); a clean reconciliation clears it.
//!
//! A process that was not cleared to trade live (an operator command in mode live, say) gets the venue with
//! orders refused outright, so nothing but the cleared path can ever place a real order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::clock::Clock;
use crate::control::mutate_state;
use crate::domain::{
    Balance, Candle, ClientOrderId, Instrument, Order, OrderBook, OrderIntent, Side, Symbol, Timeframe,
};
use crate::pipeline::pretrade::Approved;
use crate::pipeline::risk::API_FAILURE_BREAKER;
use crate::ports::{EventKind, Exchange, ExchangeError, NewEvent, OrderAck, Severity, Store};

/// What happens to an order placed through [`LiveExchange`].
enum OrderPath {
    /// Cleared: sent once the dry-run cycles are over.
    Live {
        /// Dry-run cycles configured.
        dry_runs: u32,
        /// Trading cycles finished since the start.
        cycles: AtomicU32,
    },
    /// Not cleared: every order is refused with this reason.
    Refused(String),
}

/// The real venue with the live guards of the order path.
pub struct LiveExchange {
    venue: Arc<dyn Exchange>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    name: String,
    path: OrderPath,
    failures: AtomicU32,
    failure_limit: u32,
}

impl LiveExchange {
    /// The venue, cleared for live orders after `dry_runs` cycles; `failure_limit` consecutive failed calls trip
    /// the API-failure breaker (0 turns it off).
    pub fn cleared(
        venue: Arc<dyn Exchange>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        dry_runs: u32,
        failure_limit: u32,
    ) -> Self {
        let name = format!("live:{}", venue.name());
        let path = OrderPath::Live { dry_runs, cycles: AtomicU32::new(0) };
        Self { venue, store, clock, name, path, failures: AtomicU32::new(0), failure_limit }
    }

    /// The venue for reading and cancelling only: every order is refused with `why`.
    pub fn read_only(venue: Arc<dyn Exchange>, store: Arc<dyn Store>, clock: Arc<dyn Clock>, why: &str) -> Self {
        let name = format!("live-read-only:{}", venue.name());
        let path = OrderPath::Refused(why.to_owned());
        Self { venue, store, clock, name, path, failures: AtomicU32::new(0), failure_limit: 0 }
    }

    /// A trading cycle finished: one dry-run cycle fewer to go.
    pub fn cycle_finished(&self) {
        if let OrderPath::Live { cycles, .. } = &self.path {
            cycles.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The dry-run cycle the next order falls in (1-based) and how many there are, while dry runs last.
    pub fn dry_run(&self) -> Option<(u32, u32)> {
        match &self.path {
            OrderPath::Live { dry_runs, cycles } => {
                let done = cycles.load(Ordering::SeqCst);
                (done < *dry_runs).then_some((done + 1, *dry_runs))
            }
            OrderPath::Refused(_) => None,
        }
    }

    /// Consecutive failed calls so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::SeqCst)
    }

    /// Counts the outcome of a call: a success resets the count; a failure that is the venue's (not a refusal of
    /// the request itself) adds one, and the limit-th trips the breaker.
    async fn count<T>(&self, what: &str, r: Result<T, ExchangeError>) -> Result<T, ExchangeError> {
        match &r {
            Ok(_) | Err(ExchangeError::Rejected(_)) => {
                self.failures.store(0, Ordering::SeqCst);
            }
            Err(e) => {
                let n = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
                if self.failure_limit > 0 && n >= self.failure_limit {
                    self.trip(n, what, e).await;
                }
            }
        }
        r
    }

    async fn trip(&self, n: u32, what: &str, e: &ExchangeError) {
        let now = self.clock.now();
        let why = format!("{n} consecutive exchange failures (last: {what}: {e}): no entries until a clean reconcile");
        let result = mutate_state(self.store.as_ref(), None, |st| {
            if st.tripped.contains_key(API_FAILURE_BREAKER) {
                return Vec::new();
            }
            st.tripped.insert(API_FAILURE_BREAKER.into(), why.clone());
            vec![
                NewEvent::new(now, EventKind::BreakerTripped, Severity::Critical, why.clone())
                    .payload(serde_json::json!({"breaker": API_FAILURE_BREAKER, "failures": n}))
                    .dedup(format!("breaker:{API_FAILURE_BREAKER}")),
            ]
        })
        .await;
        if let Err(err) = result {
            // The store is away too: the failing cycle halts on its own error; the next call tries again.
            tracing::error!("breaker {API_FAILURE_BREAKER} not recorded: {err}");
        }
    }

    /// What a dry-run order would have done on the live book, as the reason it was not sent.
    async fn simulate(&self, intent: &OrderIntent, cycle: u32, of: u32) -> String {
        let head = format!("dry run (cycle {cycle} of {of} after start): nothing sent");
        match self.venue.order_book(&intent.symbol, 20).await {
            Ok(book) => {
                let level = match intent.side {
                    Side::Buy => book.asks.first(),
                    Side::Sell => book.bids.first(),
                };
                let est = crate::pipeline::liquidity::slippage(&book, intent.side, intent.qty);
                match level {
                    Some((price, _)) => format!(
                        "{head}; would {} {} at about {price} (best of the live book{})",
                        intent.side.as_str(),
                        intent.qty,
                        est.map(|s| format!(", est. slippage {:.3}%", s * Decimal::ONE_HUNDRED)).unwrap_or_default()
                    ),
                    None => format!("{head}; the live book is empty"),
                }
            }
            Err(e) => format!("{head}; the live book was unreadable ({e})"),
        }
    }
}

#[async_trait]
impl Exchange for LiveExchange {
    fn name(&self) -> &str {
        &self.name
    }

    async fn instrument(&self, symbol: &Symbol) -> Result<Instrument, ExchangeError> {
        let r = self.venue.instrument(symbol).await;
        self.count("instrument", r).await
    }

    async fn closed_candles(
        &self,
        symbol: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Candle>, ExchangeError> {
        let r = self.venue.closed_candles(symbol, tf, until, limit).await;
        self.count("candles", r).await
    }

    async fn last_price(&self, symbol: &Symbol) -> Result<Decimal, ExchangeError> {
        let r = self.venue.last_price(symbol).await;
        self.count("last price", r).await
    }

    async fn order_book(&self, symbol: &Symbol, depth: usize) -> Result<OrderBook, ExchangeError> {
        let r = self.venue.order_book(symbol, depth).await;
        self.count("order book", r).await
    }

    async fn balances(&self) -> Result<Vec<Balance>, ExchangeError> {
        let r = self.venue.balances().await;
        self.count("balances", r).await
    }

    async fn place_market_order(
        &self,
        client_order_id: &ClientOrderId,
        run_id: &str,
        approved: &Approved<OrderIntent>,
    ) -> Result<OrderAck, ExchangeError> {
        if let OrderPath::Refused(why) = &self.path {
            return Err(ExchangeError::Rejected(why.clone()));
        }
        if let Some((cycle, of)) = self.dry_run() {
            let why = self.simulate(approved.get(), cycle, of).await;
            tracing::info!(client_order_id = %client_order_id, "{why}");
            return Err(ExchangeError::Rejected(why));
        }
        let r = self.venue.place_market_order(client_order_id, run_id, approved).await;
        self.count("place order", r).await
    }

    async fn order(&self, symbol: &Symbol, client_order_id: &ClientOrderId) -> Result<Option<OrderAck>, ExchangeError> {
        let r = self.venue.order(symbol, client_order_id).await;
        self.count("order lookup", r).await
    }

    async fn open_orders(&self) -> Result<Vec<Order>, ExchangeError> {
        let r = self.venue.open_orders().await;
        self.count("open orders", r).await
    }

    async fn cancel_order(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<OrderAck>, ExchangeError> {
        let r = self.venue.cancel_order(symbol, client_order_id).await;
        self.count("cancel", r).await
    }
}
