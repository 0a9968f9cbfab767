//! A bot on a venue whose state the test can change: the real pipeline, the real simulator `SimExchange` behind a
//! thin wrapper, the real store (SQLite or PostgreSQL) and a manual clock. The wrapper adds holdings nobody booked,
//! shows open orders the bot never placed, makes an order book unreadable, counts the orders actually sent, and can
//! issue a command from inside its first `place_market_order` (as an operator would while a cycle runs). The
//! strategy is scripted: the test sets the target weights, so each scenario trades exactly what it means to.

// Shared by several test modules; not every helper is used by each.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use mcbot::store::Backend;
use mcbot_schedules::jobs::ReconcileJob;
use mcbot_stages::control::{Command, Issuer, issue};
use mcbot_stages::domain::{
    Balance, Candle, ClientOrderId, Decimal, Instrument, Order, OrderBook, OrderIntent, OrderStatus, RunId, Side,
    Symbol, Timeframe,
};
use mcbot_stages::pipeline::execution::SizingParams;
use mcbot_stages::pipeline::pretrade::{Approved, PreTradeLimits};
use mcbot_stages::pipeline::risk::RiskLimits;
use mcbot_stages::pipeline::{CycleReport, Pipeline, PipelineConfig, StageSelection};
use mcbot_stages::ports::{Event, EventKind, EventQuery, Exchange, ExchangeError, OrderAck, Store};
use mcbot_stages::sim::{MarketSource, RandomWalk, SimConfig, SimExchange};
use mcbot_stages::strategy::{Strategy, SymbolBars, Target};
use mcbot_stages::{Clock, ManualClock};

use crate::support::db::{DbGuard, TestStore, test_store};

/// Open time of the simulated market's first bar.
pub fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().to_utc()
}

/// The bar length everything runs on.
pub fn tf() -> Timeframe {
    "1h".parse().unwrap()
}

/// A symbol by name.
pub fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

/// The traded symbols.
pub fn symbols() -> Vec<Symbol> {
    ["BTCUSDT", "ETHUSDT", "SOLUSDT"].iter().map(|s| sym(s)).collect()
}

/// A command to issue from inside an order placement: on which store, what, by whom.
type Hook = (Arc<dyn Store>, Command, Issuer);

/// The simulator around `SimExchange`, with state the test controls.
pub struct Venue {
    /// The real simulator: fills, balances, orders.
    pub sim: SimExchange,
    /// Added to the simulator's balances, by asset (negative removes): holdings the bot did not book.
    extra: Mutex<BTreeMap<String, Decimal>>,
    /// Open orders shown in addition to the simulator's (placed by someone else on the account).
    foreign: Mutex<Vec<Order>>,
    /// Symbols whose order book cannot be read.
    unreadable_books: Mutex<BTreeSet<Symbol>>,
    /// Every `place_market_order` call, in order.
    sent: Mutex<Vec<(Symbol, Side)>>,
    /// Issued (store, command, issuer) from inside the next `place_market_order` call, once.
    on_next_place: Mutex<Option<Hook>>,
    clock: Arc<ManualClock>,
}

impl Venue {
    /// A fresh simulated account with 10 000 USDT.
    pub fn new(clock: Arc<ManualClock>) -> Self {
        let instruments = symbols()
            .iter()
            .map(|s| Instrument {
                symbol: s.clone(),
                base: s.as_str().trim_end_matches("USDT").into(),
                quote: "USDT".into(),
                tick_size: Decimal::new(1, 2),
                step_size: Decimal::new(1, 5),
                min_notional: Decimal::from(10),
            })
            .collect();
        let start_prices: HashMap<Symbol, Decimal> = [("BTCUSDT", 40_000), ("ETHUSDT", 2_000), ("SOLUSDT", 100)]
            .iter()
            .map(|(s, p)| (sym(s), Decimal::from(*p)))
            .collect();
        let market = MarketSource::random_walk(RandomWalk {
            seed: 21,
            start: start(),
            bar_vol: 0.01,
            start_prices,
            price_dp: 2,
        });
        let cfg = SimConfig {
            quote: "USDT".into(),
            initial_cash: Decimal::from(10_000),
            fee_rate: Decimal::new(1, 3),
            slippage_bps: Decimal::from(5),
            timeframe: tf(),
            instruments,
        };
        Self {
            sim: SimExchange::new(market, cfg, clock.clone()),
            extra: Mutex::default(),
            foreign: Mutex::default(),
            unreadable_books: Mutex::default(),
            sent: Mutex::default(),
            on_next_place: Mutex::default(),
            clock,
        }
    }

    /// Adds `qty` of `asset` to what the account shows (negative removes): a deposit, a withdrawal, a trade made
    /// outside the bot.
    pub fn add_balance(&self, asset: &str, qty: Decimal) {
        *self.extra.lock().unwrap().entry(asset.to_owned()).or_default() += qty;
    }

    /// Shows an open limit buy of `symbol` under `client_order_id` that the bot never placed.
    pub fn add_foreign_open_order(&self, symbol: &Symbol, client_order_id: &str) {
        self.foreign.lock().unwrap().push(Order {
            client_order_id: ClientOrderId::from_stored(client_order_id.to_owned()),
            run_id: String::new(),
            symbol: symbol.clone(),
            side: Side::Buy,
            qty: Decimal::new(1, 2),
            filled_qty: Decimal::ZERO,
            avg_price: None,
            status: OrderStatus::New,
            exchange_order_id: Some("manual-1".into()),
            created_at: self.clock.now(),
            reason: "placed by hand on the exchange's website".into(),
        });
    }

    /// Makes the order book of `symbol` unreadable.
    pub fn break_book(&self, symbol: &Symbol) {
        self.unreadable_books.lock().unwrap().insert(symbol.clone());
    }

    /// The next `place_market_order` call first issues `command` on `store` (as an operator while a cycle runs).
    pub fn issue_on_next_place(&self, store: Arc<dyn Store>, command: Command, issuer: Issuer) {
        *self.on_next_place.lock().unwrap() = Some((store, command, issuer));
    }

    /// Every order sent so far, in order.
    pub fn sent(&self) -> Vec<(Symbol, Side)> {
        self.sent.lock().unwrap().clone()
    }

    /// Forgets the orders sent so far.
    pub fn clear_sent(&self) {
        self.sent.lock().unwrap().clear();
    }

    /// What the account holds of `asset`, as the venue reports it.
    pub async fn holding(&self, asset: &str) -> Decimal {
        self.balances().await.unwrap().iter().filter(|b| b.asset == asset).map(|b| b.total()).sum()
    }

    /// Places a market order on the account that the bot knows nothing of (a trade made by hand).
    pub async fn trade_by_hand(&self, symbol: &Symbol, side: Side, qty: Decimal) {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let id = ClientOrderId::from_stored(format!("manual-{symbol}-{}", SEQ.fetch_add(1, Ordering::Relaxed)));
        let ref_price = self.sim.last_price(symbol).await.unwrap();
        let intent =
            OrderIntent { symbol: symbol.clone(), side, qty, ref_price, reduce_only: false, reason: "by hand".into() };
        self.sim.place_market_order(&id, "manual", &crate::support::approval::approved(intent)).await.unwrap();
    }
}

#[async_trait]
impl Exchange for Venue {
    fn name(&self) -> &str {
        "test-venue"
    }
    async fn instrument(&self, s: &Symbol) -> Result<Instrument, ExchangeError> {
        self.sim.instrument(s).await
    }
    async fn closed_candles(
        &self,
        s: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Candle>, ExchangeError> {
        self.sim.closed_candles(s, tf, until, limit).await
    }
    async fn last_price(&self, s: &Symbol) -> Result<Decimal, ExchangeError> {
        self.sim.last_price(s).await
    }
    async fn order_book(&self, s: &Symbol, depth: usize) -> Result<OrderBook, ExchangeError> {
        if self.unreadable_books.lock().unwrap().contains(s) {
            return Err(ExchangeError::Malformed(format!("order book of {s}: unexpected end of input")));
        }
        self.sim.order_book(s, depth).await
    }
    async fn balances(&self) -> Result<Vec<Balance>, ExchangeError> {
        let mut all: BTreeMap<String, Balance> =
            self.sim.balances().await?.into_iter().map(|b| (b.asset.clone(), b)).collect();
        for (asset, qty) in self.extra.lock().unwrap().iter() {
            let b = all.entry(asset.clone()).or_insert_with(|| Balance {
                asset: asset.clone(),
                free: Decimal::ZERO,
                locked: Decimal::ZERO,
            });
            b.free += *qty;
        }
        Ok(all.into_values().filter(|b| !b.total().is_zero()).collect())
    }
    async fn place_market_order(
        &self,
        id: &ClientOrderId,
        run: &str,
        intent: &Approved<OrderIntent>,
    ) -> Result<OrderAck, ExchangeError> {
        let hook = self.on_next_place.lock().unwrap().take();
        if let Some((store, command, issuer)) = hook {
            issue(store.as_ref(), &command, issuer, "issued while a cycle runs", self.clock.now()).await.unwrap();
        }
        self.sent.lock().unwrap().push((intent.get().symbol.clone(), intent.get().side));
        self.sim.place_market_order(id, run, intent).await
    }
    async fn order(&self, s: &Symbol, id: &ClientOrderId) -> Result<Option<OrderAck>, ExchangeError> {
        self.sim.order(s, id).await
    }
    async fn open_orders(&self) -> Result<Vec<Order>, ExchangeError> {
        let mut open = self.sim.open_orders().await?;
        open.extend(self.foreign.lock().unwrap().iter().cloned());
        Ok(open)
    }
    async fn cancel_order(&self, s: &Symbol, id: &ClientOrderId) -> Result<Option<OrderAck>, ExchangeError> {
        self.sim.cancel_order(s, id).await
    }
}

/// A strategy whose target weights the test sets: symbols not set get weight 0.
pub struct Scripted {
    weights: Arc<Mutex<BTreeMap<Symbol, Decimal>>>,
}

impl Strategy for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn warmup(&self) -> usize {
        2
    }
    fn targets(&self, bars: &[SymbolBars<'_>]) -> Vec<Target> {
        let w = self.weights.lock().unwrap();
        bars.iter()
            .map(|b| Target {
                symbol: b.symbol.clone(),
                weight: w.get(b.symbol).copied().unwrap_or_default(),
                reason: "scripted by the test".into(),
            })
            .collect()
    }
}

/// The bot under test. Fields drop in order: the database goes last.
pub struct Bot {
    /// Virtual time.
    pub clock: Arc<ManualClock>,
    /// The venue.
    pub venue: Arc<Venue>,
    /// The real store.
    pub store: Arc<dyn Store>,
    /// The real pipeline.
    pub pipeline: Pipeline,
    weights: Arc<Mutex<BTreeMap<Symbol, Decimal>>>,
    /// Which engine.
    pub backend: Backend,
    _db: DbGuard,
}

/// The first bar a cycle runs at (the market has history by then).
pub const FIRST: i64 = 10;

impl Bot {
    /// A fresh bot on a fresh database of `backend`, the clock at bar [`FIRST`].
    pub async fn new(backend: Backend) -> Self {
        Self::with_risk(backend, |_| {}).await
    }

    /// [`Bot::new`] with the risk limits edited by `edit`.
    pub async fn with_risk(backend: Backend, edit: impl FnOnce(&mut RiskLimits)) -> Self {
        let TestStore { store, guard, .. } = test_store(backend).await;
        let store: Arc<dyn Store> = Arc::new(store);
        let clock = Arc::new(ManualClock::new(start() + Duration::hours(FIRST) + Duration::seconds(5)));
        let venue = Arc::new(Venue::new(clock.clone()));
        let weights = Arc::new(Mutex::new(BTreeMap::new()));
        let kill_dir = std::env::temp_dir().join(format!("mcbot-no-kill-file-{}", std::process::id()));
        let cfg = PipelineConfig {
            symbols: symbols(),
            timeframe: tf(),
            quote: "USDT".into(),
            stage_timeout: StdDuration::from_secs(30),
            lookback: 5,
            risk: {
                let mut r =
                    RiskLimits { stop_loss_pct: None, kill_switch_file: kill_dir.join("KILL"), ..Default::default() };
                edit(&mut r);
                r
            },
            pretrade: PreTradeLimits::default(),
            sizing: SizingParams::default(),
            gate: Default::default(),
        };
        let strategy = Box::new(Scripted { weights: weights.clone() });
        let pipeline = Pipeline::new(cfg, venue.clone(), store.clone(), clock.clone(), strategy);
        Self { clock, venue, store, pipeline, weights, backend, _db: guard }
    }

    /// Sets the target weight of `symbol` for the following cycles.
    pub fn target(&self, symbol: &str, weight: Decimal) {
        self.weights.lock().unwrap().insert(sym(symbol), weight);
    }

    /// Runs the full cycle of bar `h` (hours after [`start`]), five seconds after its close.
    pub async fn cycle(&self, h: i64) -> CycleReport {
        let bar = start() + Duration::hours(h);
        self.clock.set(bar + Duration::seconds(5));
        let run = RunId::new("trading-cycle", bar);
        self.pipeline.run_cycle(&run, bar, StageSelection::All, None).await.unwrap()
    }

    /// The reconcile job on this bot's store and venue, with the default settings.
    pub fn reconcile_job(&self) -> ReconcileJob {
        let clock: Arc<dyn Clock> = self.clock.clone();
        ReconcileJob::new(self.store.clone(), self.venue.clone(), clock, symbols())
    }

    /// The stored position of `symbol` (zero when none).
    pub async fn position(&self, symbol: &str) -> Decimal {
        let s = sym(symbol);
        self.store.positions().await.unwrap().into_iter().find(|p| p.symbol == s).map_or(Decimal::ZERO, |p| p.qty)
    }

    /// Every event of `kind`, oldest first.
    pub async fn events(&self, kind: EventKind) -> Vec<Event> {
        let q = EventQuery { kinds: vec![kind], ..Default::default() };
        self.store.read_events(&q).await.unwrap()
    }
}
