//! Crashes on Execution's path: the store is cut off at every single write of a trading cycle in turn (a fault
//! injected at the store seam: that write and everything after it fail, as when the process dies). After a
//! restart on the same database and a reconciliation, every position equals the sum of its fills, and the fills
//! stored are exactly the trades the exchange made: none lost, none doubled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use mcbot::store::SqlStore;
use mcbot_schedules::jobs::ReconcileJob;
use mcbot_stages::domain::{
    Candle, ClientOrderId, Decimal, Fill, Instrument, Order, Position, RunId, Side, Symbol, Timeframe,
};
use mcbot_stages::pipeline::execution::SizingParams;
use mcbot_stages::pipeline::risk::RiskLimits;
use mcbot_stages::pipeline::{Pipeline, PipelineConfig, StageSelection};
use mcbot_stages::ports::{
    BotState, Claimant, ConsumerCursors, EquitySnapshot, Event, EventQuery, Exchange, JobClaim, JobRunRecord,
    JobStatus, NewEvent, ReportRecord, RunFence, Severity, SignalRecord, Store, StoreError, UnitOfWork, Versioned,
};
use mcbot_stages::sim::{MarketSource, RandomWalk, SimConfig, SimExchange};
use mcbot_stages::strategy::{Tsmom, TsmomParams};
use mcbot_stages::{Clock, ManualClock};

use crate::support::db::fresh_sqlite_url;

/// Counts writes; from write number `die_at` on, every call fails as if the process had died.
struct Cut {
    writes: AtomicUsize,
    die_at: usize,
    dead: AtomicBool,
}

impl Cut {
    fn write(&self) -> Result<(), StoreError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("process is dead".into()));
        }
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.die_at {
            self.dead.store(true, Ordering::SeqCst);
            return Err(StoreError::Unavailable(format!("crash injected at write {n}")));
        }
        Ok(())
    }

    fn read(&self) -> Result<(), StoreError> {
        if self.dead.load(Ordering::SeqCst) { Err(StoreError::Unavailable("process is dead".into())) } else { Ok(()) }
    }
}

/// The real store behind a [`Cut`].
struct Crashing {
    inner: Arc<SqlStore>,
    cut: Arc<Cut>,
}

struct CrashingUow {
    inner: Box<dyn UnitOfWork>,
    cut: Arc<Cut>,
}

#[async_trait]
impl UnitOfWork for CrashingUow {
    async fn fence(&mut self, fence: &RunFence) -> Result<(), StoreError> {
        self.cut.write()?;
        self.inner.fence(fence).await
    }
    async fn insert_order(&mut self, order: &Order) -> Result<bool, StoreError> {
        self.cut.write()?;
        self.inner.insert_order(order).await
    }
    async fn update_order(&mut self, order: &Order) -> Result<(), StoreError> {
        self.cut.write()?;
        self.inner.update_order(order).await
    }
    async fn insert_fill(&mut self, fill: &Fill) -> Result<bool, StoreError> {
        self.cut.write()?;
        self.inner.insert_fill(fill).await
    }
    async fn position(&mut self, symbol: &Symbol) -> Result<Option<Position>, StoreError> {
        self.cut.read()?;
        self.inner.position(symbol).await
    }
    async fn save_position(&mut self, position: &Position) -> Result<(), StoreError> {
        self.cut.write()?;
        self.inner.save_position(position).await
    }
    async fn insert_equity(&mut self, snapshot: &EquitySnapshot) -> Result<(), StoreError> {
        self.cut.write()?;
        self.inner.insert_equity(snapshot).await
    }
    async fn insert_signal(&mut self, signal: &SignalRecord) -> Result<(), StoreError> {
        self.cut.write()?;
        self.inner.insert_signal(signal).await
    }
    async fn save_state(&mut self, state: &BotState, expected_version: i64) -> Result<i64, StoreError> {
        self.cut.write()?;
        self.inner.save_state(state, expected_version).await
    }
    fn append(&mut self, event: NewEvent) {
        self.inner.append(event);
    }
    async fn commit(self: Box<Self>) -> Result<Vec<i64>, StoreError> {
        self.cut.write()?;
        self.inner.commit().await
    }
}

#[async_trait]
impl Store for Crashing {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.cut.read()?;
        self.inner.ping().await
    }
    async fn begin(&self) -> Result<Box<dyn UnitOfWork>, StoreError> {
        self.cut.read()?;
        Ok(Box::new(CrashingUow { inner: self.inner.begin().await?, cut: self.cut.clone() }))
    }
    async fn claim_run(
        &self,
        run_id: &str,
        job: &str,
        scheduled_at: DateTime<Utc>,
        now: DateTime<Utc>,
        stale_after: Duration,
        claimant: &Claimant,
    ) -> Result<JobClaim, StoreError> {
        self.cut.write()?;
        self.inner.claim_run(run_id, job, scheduled_at, now, stale_after, claimant).await
    }
    async fn take_over_run(
        &self,
        run_id: &str,
        token: Option<&str>,
        now: DateTime<Utc>,
        claimant: &Claimant,
    ) -> Result<Option<JobClaim>, StoreError> {
        self.cut.write()?;
        self.inner.take_over_run(run_id, token, now, claimant).await
    }
    async fn finish_run(
        &self,
        fence: &RunFence,
        status: JobStatus,
        finished_at: DateTime<Utc>,
        error: Option<&str>,
        outcome: Option<&serde_json::Value>,
        events: Vec<NewEvent>,
    ) -> Result<(), StoreError> {
        self.cut.write()?;
        self.inner.finish_run(fence, status, finished_at, error, outcome, events).await
    }
    async fn record_skipped_run(
        &self,
        run_id: &str,
        job: &str,
        scheduled_at: DateTime<Utc>,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.cut.write()?;
        self.inner.record_skipped_run(run_id, job, scheduled_at, now, reason).await
    }
    async fn recent_runs(&self, job: Option<&str>, limit: i64) -> Result<Vec<JobRunRecord>, StoreError> {
        self.cut.read()?;
        self.inner.recent_runs(job, limit).await
    }
    async fn last_success(&self, job: &str) -> Result<Option<JobRunRecord>, StoreError> {
        self.cut.read()?;
        self.inner.last_success(job).await
    }
    async fn save_candles(&self, symbol: &Symbol, tf: Timeframe, candles: &[Candle]) -> Result<(), StoreError> {
        self.cut.write()?;
        self.inner.save_candles(symbol, tf, candles).await
    }
    async fn save_candle_sets(&self, tf: Timeframe, sets: &[(Symbol, Vec<Candle>)]) -> Result<(), StoreError> {
        self.cut.write()?;
        self.inner.save_candle_sets(tf, sets).await
    }
    async fn candles(
        &self,
        symbol: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Candle>, StoreError> {
        self.cut.read()?;
        self.inner.candles(symbol, tf, until, limit).await
    }
    async fn order(&self, id: &ClientOrderId) -> Result<Option<Order>, StoreError> {
        self.cut.read()?;
        self.inner.order(id).await
    }
    async fn open_orders(&self) -> Result<Vec<Order>, StoreError> {
        self.cut.read()?;
        self.inner.open_orders().await
    }
    async fn orders_of_run(&self, run_id: &str) -> Result<Vec<Order>, StoreError> {
        self.cut.read()?;
        self.inner.orders_of_run(run_id).await
    }
    async fn fills_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Fill>, StoreError> {
        self.cut.read()?;
        self.inner.fills_between(from, to).await
    }
    async fn positions(&self) -> Result<Vec<Position>, StoreError> {
        self.cut.read()?;
        self.inner.positions().await
    }
    async fn signals_of_run(&self, run_id: &str) -> Result<Vec<SignalRecord>, StoreError> {
        self.cut.read()?;
        self.inner.signals_of_run(run_id).await
    }
    async fn equity_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<EquitySnapshot>, StoreError> {
        self.cut.read()?;
        self.inner.equity_between(from, to).await
    }
    async fn equity_before(&self, t: DateTime<Utc>) -> Result<Option<EquitySnapshot>, StoreError> {
        self.cut.read()?;
        self.inner.equity_before(t).await
    }
    async fn insert_report(&self, report: &ReportRecord) -> Result<(), StoreError> {
        self.cut.write()?;
        self.inner.insert_report(report).await
    }
    async fn insert_heartbeat(
        &self,
        ts: DateTime<Utc>,
        ok: bool,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.cut.write()?;
        self.inner.insert_heartbeat(ts, ok, detail).await
    }
    async fn load_state_versioned(&self) -> Result<Versioned<BotState>, StoreError> {
        self.cut.read()?;
        self.inner.load_state_versioned().await
    }
    async fn read_events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        self.cut.read()?;
        self.inner.read_events(query).await
    }
    async fn recent_events(&self, min: Severity, limit: i64) -> Result<Vec<Event>, StoreError> {
        self.cut.read()?;
        self.inner.recent_events(min, limit).await
    }
    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.cut.write()?;
        self.inner.prune_events(before).await
    }
    async fn claim_consumer(
        &self,
        consumer: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        self.cut.write()?;
        self.inner.claim_consumer(consumer, holder, now, ttl).await
    }
    async fn advance_consumer(
        &self,
        consumer: &str,
        holder: &str,
        last_id: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.cut.write()?;
        self.inner.advance_consumer(consumer, holder, last_id, now).await
    }
    async fn consumer_cursors(&self) -> Result<ConsumerCursors, StoreError> {
        self.cut.read()?;
        self.inner.consumer_cursors().await
    }
}

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().to_utc()
}

fn symbols() -> Vec<Symbol> {
    ["BTCUSDT", "ETHUSDT", "SOLUSDT"].iter().map(|s| Symbol::new(s).unwrap()).collect()
}

/// The venue: a seeded simulator that lives outside the "process" (it survives the crash).
fn venue(clock: Arc<ManualClock>) -> Arc<SimExchange> {
    let tf: Timeframe = "1h".parse().unwrap();
    let instruments = symbols()
        .iter()
        .map(|s| Instrument {
            symbol: s.clone(),
            base: s.as_str().trim_end_matches("USDT").into(),
            quote: "USDT".into(),
            tick_size: Decimal::new(1, 4),
            step_size: Decimal::new(1, 5),
            min_notional: Decimal::from(10),
        })
        .collect();
    let market = MarketSource::random_walk(RandomWalk {
        seed: 11,
        start: start(),
        bar_vol: 0.02,
        start_prices: Default::default(),
        price_dp: 4,
    });
    let cfg = SimConfig {
        quote: "USDT".into(),
        initial_cash: Decimal::from(10_000),
        fee_rate: Decimal::new(1, 3),
        slippage_bps: Decimal::from(5),
        timeframe: tf,
        instruments,
    };
    Arc::new(SimExchange::new(market, cfg, clock))
}

fn pipeline(
    exchange: Arc<SimExchange>,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    dir: &std::path::Path,
) -> Pipeline {
    sized_pipeline(exchange, store, clock, dir, Decimal::ONE)
}

/// [`pipeline`] sizing its targets on `fraction` of equity.
fn sized_pipeline(
    exchange: Arc<SimExchange>,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    dir: &std::path::Path,
    fraction: Decimal,
) -> Pipeline {
    let tf: Timeframe = "1h".parse().unwrap();
    let cfg = PipelineConfig {
        symbols: symbols(),
        timeframe: tf,
        quote: "USDT".into(),
        stage_timeout: std::time::Duration::from_secs(30),
        lookback: 10,
        risk: RiskLimits { stop_loss_pct: None, kill_switch_file: dir.join("KILL"), ..Default::default() },
        pretrade: Default::default(),
        sizing: SizingParams { capital_fraction: fraction, ..SizingParams::default() },
        gate: Default::default(),
    };
    let strategy = Box::new(Tsmom::new(TsmomParams { lookback: 3, ..Default::default() }, tf.bars_per_year()));
    Pipeline::new(cfg, exchange, store, clock, strategy)
}

async fn cycle(p: &Pipeline, clock: &ManualClock, h: i64) -> Result<usize, String> {
    let bar = start() + Duration::hours(h);
    clock.set(bar + Duration::seconds(5));
    let run = RunId::new("trading-cycle", bar);
    let report = p.run_cycle(&run, bar, StageSelection::All, None).await.map_err(|e| e.to_string())?;
    match report.failure() {
        Some((kind, why)) => Err(format!("{kind}: {why}")),
        None => Ok(report.orders.len()),
    }
}

/// The first bar traded (the strategy's lookback is filled by then).
const FIRST: i64 = 10;

/// Runs bars FIRST..crash_bar cleanly, then `crash_bar` with the store cut at write `die_at`, then restarts on
/// the same database, reconciles and runs three more bars. Returns the writes counted in the crash bar.
async fn crash_once(crash_bar: i64, die_at: usize) -> usize {
    let db = fresh_sqlite_url();
    let clock = Arc::new(ManualClock::new(start() + Duration::hours(FIRST)));
    let exchange = venue(clock.clone());
    let sql = Arc::new(SqlStore::open(db.url()).await.unwrap());
    let plain = pipeline(exchange.clone(), sql.clone(), clock.clone(), db.dir());
    for h in FIRST..crash_bar {
        cycle(&plain, &clock, h).await.unwrap();
    }
    let cut = Arc::new(Cut { writes: AtomicUsize::new(0), die_at, dead: AtomicBool::new(false) });
    let crashing: Arc<dyn Store> = Arc::new(Crashing { inner: sql.clone(), cut: cut.clone() });
    let doomed = pipeline(exchange.clone(), crashing, clock.clone(), db.dir());
    let outcome = cycle(&doomed, &clock, crash_bar).await;
    let writes = cut.writes.load(Ordering::SeqCst);
    assert_eq!(outcome.is_err(), cut.dead.load(Ordering::SeqCst), "the cycle fails exactly when the store died");

    // Restart: the same database, the same venue; reconcile, then the bar again and three more.
    let restarted = pipeline(exchange.clone(), sql.clone(), clock.clone(), db.dir());
    let dyn_sql: Arc<dyn Store> = sql.clone();
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let reconcile = ReconcileJob::new(dyn_sql, exchange.clone(), dyn_clock, symbols()).with_tolerance(Decimal::ZERO);
    let report = reconcile.reconcile_and_guard(None).await.unwrap();
    assert!(report.drifts.is_empty(), "crash at write {die_at}: drift after restart: {report:?}");
    for h in crash_bar..crash_bar + 4 {
        cycle(&restarted, &clock, h).await.unwrap_or_else(|e| panic!("crash at write {die_at}, bar {h}: {e}"));
    }
    let report = reconcile.reconcile_and_guard(None).await.unwrap();
    assert!(report.is_clean(), "crash at write {die_at}: {report:?}");

    // Each position is the sum of its fills; the stored fills are the exchange's trades, once each.
    let fills = sql.fills_between(start(), start() + Duration::days(30)).await.unwrap();
    let mut by_symbol: BTreeMap<Symbol, Decimal> = BTreeMap::new();
    for f in &fills {
        let signed = if f.side == Side::Buy { f.qty } else { -f.qty };
        *by_symbol.entry(f.symbol.clone()).or_default() += signed;
    }
    let balances = exchange.balances().await.unwrap();
    for p in sql.positions().await.unwrap() {
        let sum = by_symbol.get(&p.symbol).copied().unwrap_or_default();
        assert_eq!(p.qty, sum, "crash at write {die_at}: {} position is the sum of its fills", p.symbol);
        let base = p.symbol.as_str().trim_end_matches("USDT");
        let held = balances.iter().find(|b| b.asset == base).map_or(Decimal::ZERO, |b| b.total());
        assert_eq!(p.qty, held, "crash at write {die_at}: {} position equals the exchange's", p.symbol);
    }
    let mut exchange_trades = 0;
    assert!(sql.open_orders().await.unwrap().is_empty(), "crash at write {die_at}: an order left open");
    for h in FIRST..crash_bar + 4 {
        let run = RunId::new("trading-cycle", start() + Duration::hours(h));
        for o in sql.orders_of_run(run.as_str()).await.unwrap() {
            let ack = exchange.order(&o.symbol, &o.client_order_id).await.unwrap();
            exchange_trades += ack.map_or(0, |a| a.fills.len());
        }
    }
    assert_eq!(fills.len(), exchange_trades, "crash at write {die_at}: no fill lost or doubled");
    let state = sql.load_state().await.unwrap();
    assert!(!state.safe_mode, "crash at write {die_at}: {state:?}");
    writes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_write_of_a_trading_cycle_loses_and_doubles_nothing() {
    // Find a bar that trades (the simulator is seeded, so every run below replays the same market), and how many
    // writes its cycle makes on a store that never dies.
    let db = fresh_sqlite_url();
    let clock = Arc::new(ManualClock::new(start() + Duration::hours(FIRST)));
    let store = Arc::new(SqlStore::open(db.url()).await.unwrap());
    let p = pipeline(venue(clock.clone()), store, clock.clone(), db.dir());
    let mut crash_bar = None;
    for h in FIRST..FIRST + 40 {
        if cycle(&p, &clock, h).await.unwrap() >= 2 && h >= FIRST + 3 {
            crash_bar = Some(h);
            break;
        }
    }
    let crash_bar = crash_bar.expect("a bar with at least two orders within 40 bars");
    let total = crash_once(crash_bar, usize::MAX).await;
    assert!(total >= 8, "a trading cycle with two orders writes more than a handful of times: {total}");
    for die_at in 1..=total {
        crash_once(crash_bar, die_at).await;
    }
}

/// A run that died after its orders and is taken over when its targets have moved (here: sized on a third of
/// equity, as a changed price or a booked fill would move them) keeps its first decision per symbol: the
/// exchange never holds a buy and a sell of one run for one symbol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_taken_over_with_moved_targets_never_orders_the_other_side() {
    let db = fresh_sqlite_url();
    let clock = Arc::new(ManualClock::new(start() + Duration::hours(FIRST)));
    let store = Arc::new(SqlStore::open(db.url()).await.unwrap());
    let p = pipeline(venue(clock.clone()), store, clock.clone(), db.dir());
    let mut buy_bar = None;
    for h in FIRST..FIRST + 40 {
        if cycle(&p, &clock, h).await.unwrap() >= 1 && h >= FIRST + 3 {
            buy_bar = Some(h);
            break;
        }
    }
    let bar = buy_bar.expect("a bar with an order within 40 bars");
    let mut opposite_wanted = 0;
    for die_at in [usize::MAX].into_iter().chain(1..40) {
        let db = fresh_sqlite_url();
        let clock = Arc::new(ManualClock::new(start() + Duration::hours(FIRST)));
        let exchange = venue(clock.clone());
        let sql = Arc::new(SqlStore::open(db.url()).await.unwrap());
        let plain = pipeline(exchange.clone(), sql.clone(), clock.clone(), db.dir());
        for h in FIRST..bar {
            cycle(&plain, &clock, h).await.unwrap();
        }
        let cut = Arc::new(Cut { writes: AtomicUsize::new(0), die_at, dead: AtomicBool::new(false) });
        let crashing: Arc<dyn Store> = Arc::new(Crashing { inner: sql.clone(), cut: cut.clone() });
        let first = cycle(&pipeline(exchange.clone(), crashing, clock.clone(), db.dir()), &clock, bar).await;
        if first.is_ok() {
            continue; // the store outlived the cycle: nothing to take over
        }
        let run = RunId::new("trading-cycle", start() + Duration::hours(bar));
        let placed_before = sql.orders_of_run(run.as_str()).await.unwrap().len();
        let smaller = sized_pipeline(exchange.clone(), sql.clone(), clock.clone(), db.dir(), Decimal::new(3, 1));
        let bar_close = start() + Duration::hours(bar);
        let report = smaller.run_cycle(&run, bar_close, StageSelection::All, None).await.unwrap();
        opposite_wanted += report.skipped.iter().filter(|(_, why)| why.contains("already placed")).count();
        let mut sides: BTreeMap<Symbol, Vec<Side>> = BTreeMap::new();
        for o in sql.orders_of_run(run.as_str()).await.unwrap() {
            if exchange.order(&o.symbol, &o.client_order_id).await.unwrap().is_some() {
                sides.entry(o.symbol.clone()).or_default().push(o.side);
            }
        }
        assert!(
            sides.values().all(|s| s.len() == 1),
            "crash at write {die_at} ({placed_before} orders stored): orders of one run at the exchange {sides:?}"
        );
    }
    assert!(opposite_wanted > 0, "some takeover wanted the other side (else this test proves nothing)");
}
