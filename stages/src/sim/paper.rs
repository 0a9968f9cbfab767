//! Paper and shadow trading over a real venue's market data: the same pipeline, the same strategy and risk
//! code; only where the orders go differs. Paper fills by walking the venue's live order book with the
//! configured fee; shadow records the intended orders and fills nothing. Both are one wrapper: market data is
//! delegated to the venue once, and only the fill model differs.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::account::SimAccount;
use crate::clock::Clock;
use crate::domain::{
    Balance, Candle, ClientOrderId, Fill, Instrument, Order, OrderBook, OrderIntent, OrderStatus, Side, Symbol,
    Timeframe,
};
use crate::pipeline::pretrade::Approved;
use crate::ports::{Exchange, ExchangeError, OrderAck, Store};

/// Where orders go when the venue only provides market data.
enum FillModel {
    /// A simulated account filled against the venue's order book.
    Paper { account: Mutex<SimAccount>, fee_rate: Decimal, book_depth: usize },
    /// Nothing is filled; balances are a fixed virtual cash so sizing looks like a fresh account's.
    Shadow { cash: Balance },
}

/// Market data from `venue`; orders filled on paper or only recorded (shadow).
pub struct PaperExchange {
    venue: Arc<dyn Exchange>,
    fills: FillModel,
    clock: Arc<dyn Clock>,
    name: String,
    ledger: Option<Ledger>,
}

/// The store whose fills are the paper account: every process on the database, and every restart, books the same
/// fills, so replicas share one account instead of each keeping its own in memory.
struct Ledger {
    store: Arc<dyn Store>,
    seen: tokio::sync::Mutex<Seen>,
}

/// How far the account has caught up with the stored fills.
#[derive(Default)]
struct Seen {
    /// Trade ids already booked (by this process's own orders or from the store).
    trades: HashSet<String>,
    /// The latest fill time read; later reads start a margin before it.
    since: Option<DateTime<Utc>>,
    /// Instruments by symbol, read from the venue once.
    instruments: BTreeMap<Symbol, Instrument>,
}

impl PaperExchange {
    /// A paper account of `cash` in `quote` over `venue`.
    pub fn new(venue: Arc<dyn Exchange>, quote: &str, cash: Decimal, fee_rate: Decimal, clock: Arc<dyn Clock>) -> Self {
        let name = format!("paper:{}", venue.name());
        let account = Mutex::new(SimAccount::new(quote, cash, "paper"));
        Self { venue, fills: FillModel::Paper { account, fee_rate, book_depth: 100 }, clock, name, ledger: None }
    }

    /// Keeps the paper account in `store`: before each read or order, fills another process (or an earlier run)
    /// recorded are booked, so the account is the store's and not this process's memory. Nothing is read at
    /// construction, so commands that never touch the account work while the venue is down.
    pub fn with_ledger(mut self, store: Arc<dyn Store>) -> Self {
        if matches!(self.fills, FillModel::Paper { .. }) {
            self.ledger = Some(Ledger { store, seen: tokio::sync::Mutex::new(Seen::default()) });
        }
        self
    }

    /// Books the stored fills this account has not seen yet.
    async fn sync(&self) -> Result<(), ExchangeError> {
        let (Some(ledger), FillModel::Paper { account, .. }) = (&self.ledger, &self.fills) else { return Ok(()) };
        let mut seen = ledger.seen.lock().await;
        // From a margin before the latest fill read: a fill stamped earlier but committed later by another process
        // is still found (the trade ids already booked are skipped).
        let from = seen.since.map_or(DateTime::<Utc>::MIN_UTC, |t| t - LATE_COMMIT);
        let fills = ledger.store.fills_between(from, DateTime::<Utc>::MAX_UTC).await.map_err(|e| {
            ExchangeError::Retryable { retry_after: READ_RETRY, message: format!("paper account: {e}") }
        })?;
        let new: Vec<Fill> = fills.into_iter().filter(|f| !seen.trades.contains(&f.trade_id)).collect();
        if new.is_empty() {
            return Ok(());
        }
        for f in &new {
            if !seen.instruments.contains_key(&f.symbol) {
                let inst = self.venue.instrument(&f.symbol).await?;
                seen.instruments.insert(f.symbol.clone(), inst);
            }
        }
        let instruments: Vec<Instrument> = seen.instruments.values().cloned().collect();
        lock(account).restore(&instruments, &new);
        for f in new {
            seen.since = seen.since.max(Some(f.ts));
            seen.trades.insert(f.trade_id);
        }
        Ok(())
    }

    /// Records fills this process made itself, so the next sync does not book them twice.
    async fn saw(&self, fills: &[Fill]) {
        if let Some(ledger) = &self.ledger {
            let mut seen = ledger.seen.lock().await;
            seen.trades.extend(fills.iter().map(|f| f.trade_id.clone()));
        }
    }

    /// Shadows `venue` with a virtual `cash` in `quote`: intended orders are recorded, never sent or filled.
    pub fn shadow(venue: Arc<dyn Exchange>, quote: &str, cash: Decimal, clock: Arc<dyn Clock>) -> Self {
        let name = format!("shadow:{}", venue.name());
        let cash = Balance { asset: quote.to_owned(), free: cash, locked: Decimal::ZERO };
        Self { venue, fills: FillModel::Shadow { cash }, clock, name, ledger: None }
    }
}

/// How much earlier than the latest fill read a late-committed fill may be stamped.
const LATE_COMMIT: chrono::Duration = chrono::Duration::hours(1);

/// Delay before a paper order whose market data could not be read is tried again.
const READ_RETRY: Duration = Duration::from_secs(1);

/// A venue read that failed while filling a paper order. Paper orders never leave the process, so the order was
/// not placed and may be tried again under the same id: an unreadable answer (`Malformed`) or a read whose answer
/// was lost (`Unknown`) is `Retryable` here, since only a request that may have reached a venue can leave an
/// order's outcome unknown. A refusal (`Rejected`) and credentials or a ban (`Fatal`) keep their meaning.
fn not_placed(e: ExchangeError) -> ExchangeError {
    match e {
        ExchangeError::Malformed(why) | ExchangeError::Unknown(why) => ExchangeError::Retryable {
            retry_after: READ_RETRY,
            message: format!("paper order not placed: the venue's market data could not be read: {why}"),
        },
        other => other,
    }
}

fn lock(account: &Mutex<SimAccount>) -> std::sync::MutexGuard<'_, SimAccount> {
    account.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl Exchange for PaperExchange {
    fn name(&self) -> &str {
        &self.name
    }

    async fn instrument(&self, symbol: &Symbol) -> Result<Instrument, ExchangeError> {
        self.venue.instrument(symbol).await
    }

    async fn closed_candles(
        &self,
        symbol: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Candle>, ExchangeError> {
        self.venue.closed_candles(symbol, tf, until, limit).await
    }

    async fn last_price(&self, symbol: &Symbol) -> Result<Decimal, ExchangeError> {
        self.venue.last_price(symbol).await
    }

    async fn order_book(&self, symbol: &Symbol, depth: usize) -> Result<OrderBook, ExchangeError> {
        self.venue.order_book(symbol, depth).await
    }

    async fn balances(&self) -> Result<Vec<Balance>, ExchangeError> {
        self.sync().await?;
        Ok(match &self.fills {
            FillModel::Paper { account, .. } => lock(account).balances(),
            FillModel::Shadow { cash } => vec![cash.clone()],
        })
    }

    async fn place_market_order(
        &self,
        client_order_id: &ClientOrderId,
        run_id: &str,
        approved: &Approved<OrderIntent>,
    ) -> Result<OrderAck, ExchangeError> {
        let intent = approved.get();
        let (account, fee_rate, book_depth) = match &self.fills {
            FillModel::Paper { account, fee_rate, book_depth } => (account, *fee_rate, *book_depth),
            FillModel::Shadow { .. } => {
                let order = Order {
                    client_order_id: client_order_id.clone(),
                    run_id: run_id.to_owned(),
                    symbol: intent.symbol.clone(),
                    side: intent.side,
                    qty: intent.qty,
                    filled_qty: Decimal::ZERO,
                    avg_price: None,
                    status: OrderStatus::Canceled,
                    exchange_order_id: None,
                    created_at: self.clock.now(),
                    reason: format!("{}; shadow mode: intended, not sent", intent.reason),
                };
                return Ok(OrderAck { order, fills: Vec::new() });
            }
        };
        self.sync().await.map_err(not_placed)?;
        if let Some(existing) = lock(account).order(client_order_id) {
            return Ok(existing);
        }
        // Only market data is read from the venue here: a failed read places nothing.
        let inst = self.venue.instrument(&intent.symbol).await.map_err(not_placed)?;
        let book = self.venue.order_book(&intent.symbol, book_depth).await.map_err(not_placed)?;
        let mut levels = match intent.side {
            Side::Buy => book.asks,
            Side::Sell => book.bids,
        };
        if levels.is_empty() {
            // No book: the next trade price, as a last resort.
            levels.push((self.venue.last_price(&intent.symbol).await.map_err(not_placed)?, intent.qty));
        }
        let ack = lock(account).execute(client_order_id, run_id, intent, &inst, &levels, fee_rate, self.clock.now())?;
        self.saw(&ack.fills).await;
        Ok(ack)
    }

    async fn order(
        &self,
        _symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<OrderAck>, ExchangeError> {
        self.sync().await?;
        Ok(match &self.fills {
            FillModel::Paper { account, .. } => lock(account).order(client_order_id),
            FillModel::Shadow { .. } => None,
        })
    }

    async fn open_orders(&self) -> Result<Vec<Order>, ExchangeError> {
        self.sync().await?;
        Ok(match &self.fills {
            FillModel::Paper { account, .. } => lock(account).open_orders(),
            FillModel::Shadow { .. } => Vec::new(),
        })
    }

    /// Paper orders live in the simulated account, so the cancel acts there; nothing is sent to the venue.
    /// Shadow never placed anything, so there is nothing to cancel.
    async fn cancel_order(
        &self,
        _symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<OrderAck>, ExchangeError> {
        Ok(match &self.fills {
            FillModel::Paper { account, .. } => lock(account).cancel(client_order_id),
            FillModel::Shadow { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::RunId;
    use crate::pipeline::pretrade::approved_for_tests;
    use crate::sim::{MarketSource, RandomWalk, SimConfig, SimExchange};
    use rust_decimal_macros::dec;

    fn venue(clock: Arc<ManualClock>) -> Arc<dyn Exchange> {
        venue_with_cash(clock, dec!(0))
    }

    /// The venue's own account holds `cash`, so a test can place an order at the venue directly.
    fn venue_with_cash(clock: Arc<ManualClock>, cash: Decimal) -> Arc<dyn Exchange> {
        let symbol = Symbol::new("BTCUSDT").unwrap();
        let market = MarketSource::random_walk(RandomWalk {
            seed: 3,
            start: DateTime::from_timestamp(1_704_067_200, 0).unwrap(),
            bar_vol: 0.01,
            start_prices: [(symbol.clone(), dec!(100))].into(),
            price_dp: 2,
        });
        let inst = Instrument {
            symbol,
            base: "BTC".into(),
            quote: "USDT".into(),
            tick_size: dec!(0.01),
            step_size: dec!(0.001),
            min_notional: dec!(5),
        };
        let cfg = SimConfig {
            quote: "USDT".into(),
            initial_cash: cash,
            fee_rate: dec!(0),
            slippage_bps: dec!(0),
            timeframe: "1h".parse().unwrap(),
            instruments: vec![inst],
        };
        Arc::new(SimExchange::new(market, cfg, clock))
    }

    #[tokio::test]
    async fn paper_walks_the_book_and_shadow_fills_nothing() {
        let clock = Arc::new(ManualClock::new(DateTime::from_timestamp(1_704_067_200 + 7200, 5).unwrap()));
        let v = venue(clock.clone());
        let s = Symbol::new("BTCUSDT").unwrap();
        let paper = PaperExchange::new(v.clone(), "USDT", dec!(100000), dec!(0.001), clock.clone());
        let book = v.order_book(&s, 100).await.unwrap();
        // Deeper than the first level: the average price is worse than the best ask.
        let qty = book.asks[0].1 + book.asks[1].1;
        let intent = approved_for_tests(OrderIntent {
            symbol: s.clone(),
            side: Side::Buy,
            qty,
            ref_price: book.asks[0].0,
            reduce_only: false,
            reason: "t".into(),
        });
        let id = ClientOrderId::derive(&RunId::new("t", clock.now()), &s, "buy");
        let ack = paper.place_market_order(&id, "r", &intent).await.unwrap();
        let p = ack.fills[0].price;
        assert!(p > book.asks[0].0 && p < book.asks[1].0, "{p} between the two levels walked");
        assert_eq!(paper.place_market_order(&id, "r", &intent).await.unwrap().fills[0].trade_id, ack.fills[0].trade_id);

        let shadow = PaperExchange::shadow(v, "USDT", dec!(1000), clock);
        let ack = shadow.place_market_order(&id, "r", &intent).await.unwrap();
        assert!(ack.fills.is_empty());
        assert_eq!(ack.order.status, OrderStatus::Canceled);
        assert_eq!(shadow.balances().await.unwrap()[0].free, dec!(1000));
    }

    #[tokio::test]
    async fn paper_cancels_in_its_own_account_and_shadow_has_nothing_to_cancel() {
        let clock = Arc::new(ManualClock::new(DateTime::from_timestamp(1_704_067_200 + 7200, 5).unwrap()));
        let v = venue_with_cash(clock.clone(), dec!(100000));
        let s = Symbol::new("BTCUSDT").unwrap();
        let id = |leg| ClientOrderId::derive(&RunId::new("t", clock.now()), &s, leg);
        let intent = approved_for_tests(OrderIntent {
            symbol: s.clone(),
            side: Side::Buy,
            qty: dec!(1),
            ref_price: dec!(100),
            reduce_only: false,
            reason: "t".into(),
        });
        // An order the venue itself holds: neither paper nor shadow may ask the venue about it.
        v.place_market_order(&id("at-venue"), "r", &intent).await.unwrap();

        let paper = PaperExchange::new(v.clone(), "USDT", dec!(100000), dec!(0.001), clock.clone());
        assert!(paper.cancel_order(&s, &id("never")).await.unwrap().is_none());
        assert!(paper.cancel_order(&s, &id("at-venue")).await.unwrap().is_none(), "not a paper order");
        let placed = paper.place_market_order(&id("buy"), "r", &intent).await.unwrap();
        let balances = paper.balances().await.unwrap();
        let cancelled = paper.cancel_order(&s, &id("buy")).await.unwrap().expect("the paper account has it");
        assert_eq!((cancelled.order.status, cancelled.fills), (OrderStatus::Filled, placed.fills));
        assert_eq!(paper.balances().await.unwrap(), balances, "a cancel of a filled order moves nothing");
        assert!(v.order(&s, &id("buy")).await.unwrap().is_none(), "the venue never saw the paper order");

        let shadow = PaperExchange::shadow(v.clone(), "USDT", dec!(1000), clock.clone());
        let intended = shadow.place_market_order(&id("sell"), "r", &intent).await.unwrap();
        assert_eq!(intended.order.status, OrderStatus::Canceled);
        assert!(shadow.cancel_order(&s, &id("sell")).await.unwrap().is_none(), "shadow placed nothing");
        assert!(shadow.cancel_order(&s, &id("at-venue")).await.unwrap().is_none(), "shadow sends nothing");
        assert!(v.order(&s, &id("sell")).await.unwrap().is_none());
    }

    type MakeError = fn() -> ExchangeError;

    /// A venue whose next `garbled_books` order-book reads fail with `error`; everything else is the inner
    /// venue's.
    struct GarbledReads {
        inner: Arc<dyn Exchange>,
        garbled_books: std::sync::atomic::AtomicUsize,
        error: MakeError,
    }

    impl GarbledReads {
        fn take(&self) -> Result<(), ExchangeError> {
            use std::sync::atomic::Ordering;
            let left = self.garbled_books.load(Ordering::SeqCst);
            if left > 0 {
                self.garbled_books.store(left - 1, Ordering::SeqCst);
                return Err((self.error)());
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Exchange for GarbledReads {
        fn name(&self) -> &str {
            "garbled"
        }
        async fn instrument(&self, symbol: &Symbol) -> Result<Instrument, ExchangeError> {
            self.inner.instrument(symbol).await
        }
        async fn closed_candles(
            &self,
            symbol: &Symbol,
            tf: Timeframe,
            until: DateTime<Utc>,
            limit: usize,
        ) -> Result<Vec<Candle>, ExchangeError> {
            self.inner.closed_candles(symbol, tf, until, limit).await
        }
        async fn last_price(&self, symbol: &Symbol) -> Result<Decimal, ExchangeError> {
            self.inner.last_price(symbol).await
        }
        async fn order_book(&self, symbol: &Symbol, depth: usize) -> Result<OrderBook, ExchangeError> {
            self.take()?;
            self.inner.order_book(symbol, depth).await
        }
        async fn balances(&self) -> Result<Vec<Balance>, ExchangeError> {
            self.inner.balances().await
        }
        async fn place_market_order(
            &self,
            id: &ClientOrderId,
            run_id: &str,
            approved: &Approved<OrderIntent>,
        ) -> Result<OrderAck, ExchangeError> {
            self.inner.place_market_order(id, run_id, approved).await
        }
        async fn order(&self, symbol: &Symbol, id: &ClientOrderId) -> Result<Option<OrderAck>, ExchangeError> {
            self.inner.order(symbol, id).await
        }
        async fn open_orders(&self) -> Result<Vec<Order>, ExchangeError> {
            self.inner.open_orders().await
        }
        async fn cancel_order(&self, symbol: &Symbol, id: &ClientOrderId) -> Result<Option<OrderAck>, ExchangeError> {
            self.inner.cancel_order(symbol, id).await
        }
    }

    /// Paper orders are filled inside the process: a venue read that fails while filling one (a garbled book)
    /// means nothing was placed. That is "not placed, retry under the same id", never "outcome unknown", which
    /// is kept for requests that may have reached a venue; a refusal stays a refusal.
    #[tokio::test]
    async fn a_failed_venue_read_while_filling_a_paper_order_is_not_placed_never_unknown() {
        let clock = Arc::new(ManualClock::new(DateTime::from_timestamp(1_704_067_200 + 7200, 5).unwrap()));
        let s = Symbol::new("BTCUSDT").unwrap();
        let id = |leg| ClientOrderId::derive(&RunId::new("t", clock.now()), &s, leg);
        let buy = approved_for_tests(OrderIntent {
            symbol: s.clone(),
            side: Side::Buy,
            qty: dec!(1),
            ref_price: dec!(100),
            reduce_only: false,
            reason: "t".into(),
        });
        let garbled: [(&str, MakeError); 2] = [
            ("malformed", || ExchangeError::Malformed("depth: expected a list of levels".into())),
            ("unknown", || ExchangeError::Unknown("read timed out".into())),
        ];
        for (what, error) in garbled {
            let venue = Arc::new(GarbledReads {
                inner: venue(clock.clone()),
                garbled_books: std::sync::atomic::AtomicUsize::new(1),
                error,
            });
            let paper = PaperExchange::new(venue, "USDT", dec!(100000), dec!(0.001), clock.clone());
            let cid = id(what);
            let first = paper.place_market_order(&cid, "r", &buy).await;
            assert!(
                matches!(&first, Err(ExchangeError::Retryable { message, .. }) if message.contains("not placed")),
                "{what}: {first:?}"
            );
            assert!(paper.order(&s, &cid).await.unwrap().is_none(), "{what}: nothing was placed");
            assert_eq!(paper.balances().await.unwrap()[0].free, dec!(100000), "{what}: no money moved");
            let retried = paper.place_market_order(&cid, "r", &buy).await.unwrap();
            assert_eq!(retried.order.status, OrderStatus::Filled, "{what}: placed on the retry, same id");
        }

        // A refusal from the venue (a symbol it does not list) stays a refusal.
        let paper = PaperExchange::new(venue(clock.clone()), "USDT", dec!(100000), dec!(0.001), clock.clone());
        let mut foreign = buy.get().clone();
        foreign.symbol = Symbol::new("XRPUSDT").unwrap();
        let refused = paper.place_market_order(&id("xrp"), "r", &approved_for_tests(foreign)).await;
        assert!(matches!(refused, Err(ExchangeError::Rejected(_))), "{refused:?}");
    }
}
