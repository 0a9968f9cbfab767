//! The pipeline under exchange faults: transient failures are retried under the same run id, an order whose
//! outcome is unknown is looked up by its client order id, and nothing is ever placed twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use mcbot::store::SqlStore;
use mcbot_schedules::jobs::TradingCycleJob;
use mcbot_schedules::{Job, JobContext};
use mcbot_stages::ManualClock;
use mcbot_stages::domain::{
    Balance, Candle, ClientOrderId, Decimal, Instrument, Order, OrderBook, OrderIntent, RunId, Symbol, Timeframe,
};
use mcbot_stages::pipeline::execution::SizingParams;
use mcbot_stages::pipeline::pretrade::{Approved, PreTradeLimits};
use mcbot_stages::pipeline::risk::RiskLimits;
use mcbot_stages::pipeline::{Pipeline, PipelineConfig};
use mcbot_stages::ports::{Exchange, ExchangeError, OrderAck, Store};
use mcbot_stages::sim::{MarketSource, RandomWalk, SimConfig, SimExchange};
use mcbot_stages::strategy::{Tsmom, TsmomParams};

use crate::support::db::fresh_sqlite_url;

/// The simulator with scripted faults: the first `candle_faults` candle requests fail transiently, and every
/// `lose_every`-th order is executed but its answer is lost (time-out after acceptance).
pub(crate) struct Flaky {
    inner: SimExchange,
    pub(crate) candle_faults: AtomicUsize,
    lose_every: usize,
    orders: AtomicUsize,
    lost: AtomicUsize,
}

#[async_trait]
impl Exchange for Flaky {
    fn name(&self) -> &str {
        "flaky-sim"
    }
    async fn instrument(&self, s: &Symbol) -> Result<Instrument, ExchangeError> {
        self.inner.instrument(s).await
    }
    async fn closed_candles(
        &self,
        s: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Candle>, ExchangeError> {
        if self.candle_faults.load(Ordering::SeqCst) > 0 {
            self.candle_faults.fetch_sub(1, Ordering::SeqCst);
            return Err(ExchangeError::Retryable { retry_after: StdDuration::from_millis(1), message: "503".into() });
        }
        self.inner.closed_candles(s, tf, until, limit).await
    }
    async fn last_price(&self, s: &Symbol) -> Result<Decimal, ExchangeError> {
        self.inner.last_price(s).await
    }
    async fn order_book(&self, s: &Symbol, depth: usize) -> Result<OrderBook, ExchangeError> {
        self.inner.order_book(s, depth).await
    }
    async fn balances(&self) -> Result<Vec<Balance>, ExchangeError> {
        self.inner.balances().await
    }
    async fn place_market_order(
        &self,
        id: &ClientOrderId,
        run: &str,
        intent: &Approved<OrderIntent>,
    ) -> Result<OrderAck, ExchangeError> {
        let ack = self.inner.place_market_order(id, run, intent).await?;
        if self.orders.fetch_add(1, Ordering::SeqCst).is_multiple_of(self.lose_every) {
            self.lost.fetch_add(1, Ordering::SeqCst);
            return Err(ExchangeError::Unknown("timed out after the request was sent".into()));
        }
        Ok(ack)
    }
    async fn order(&self, s: &Symbol, id: &ClientOrderId) -> Result<Option<OrderAck>, ExchangeError> {
        self.inner.order(s, id).await
    }
    async fn open_orders(&self) -> Result<Vec<Order>, ExchangeError> {
        self.inner.open_orders().await
    }
    async fn cancel_order(&self, s: &Symbol, id: &ClientOrderId) -> Result<Option<OrderAck>, ExchangeError> {
        self.inner.cancel_order(s, id).await
    }
}

/// The pipeline over a [`Flaky`] simulator (3 symbols, hourly bars, from 2024-01-01) and a fresh SQLite store.
pub(crate) struct FlakyRig {
    pub start: DateTime<Utc>,
    pub clock: Arc<ManualClock>,
    pub flaky: Arc<Flaky>,
    pub store: Arc<dyn Store>,
    pub pipeline: Arc<Pipeline>,
    pub db: crate::support::db::SqliteTestDb,
}

/// A [`FlakyRig`] whose first `candle_faults` candle requests fail transiently.
pub(crate) async fn flaky_rig(candle_faults: usize) -> FlakyRig {
    let start = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().to_utc();
    let tf: Timeframe = "1h".parse().unwrap();
    let symbols: Vec<Symbol> = ["BTCUSDT", "ETHUSDT", "SOLUSDT"].iter().map(|s| Symbol::new(s).unwrap()).collect();
    let clock = Arc::new(ManualClock::new(start + Duration::hours(10)));
    let instruments = symbols
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
        seed: 9,
        start,
        bar_vol: 0.02,
        start_prices: Default::default(),
        price_dp: 4,
    });
    let sim_cfg = SimConfig {
        quote: "USDT".into(),
        initial_cash: Decimal::from(10_000),
        fee_rate: Decimal::new(1, 3),
        slippage_bps: Decimal::from(5),
        timeframe: tf,
        instruments,
    };
    let flaky = Arc::new(Flaky {
        inner: SimExchange::new(market, sim_cfg, clock.clone()),
        candle_faults: AtomicUsize::new(candle_faults),
        lose_every: 3,
        orders: AtomicUsize::new(0),
        lost: AtomicUsize::new(0),
    });
    let db = fresh_sqlite_url();
    let store: Arc<dyn Store> = Arc::new(SqlStore::open(db.url()).await.unwrap());
    let cfg = PipelineConfig {
        symbols: symbols.clone(),
        timeframe: tf,
        quote: "USDT".into(),
        stage_timeout: StdDuration::from_secs(30),
        lookback: 10,
        risk: RiskLimits { stop_loss_pct: None, kill_switch_file: db.dir().join("KILL"), ..Default::default() },
        pretrade: PreTradeLimits::default(),
        sizing: SizingParams::default(),
        gate: Default::default(),
    };
    let strategy = Box::new(Tsmom::new(TsmomParams { lookback: 4, ..Default::default() }, tf.bars_per_year()));
    let pipeline = Arc::new(Pipeline::new(cfg, flaky.clone(), store.clone(), clock.clone(), strategy));
    FlakyRig { start, clock, flaky, store, pipeline, db }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_and_lost_answers_found_by_client_id() {
    let FlakyRig { start, clock, flaky, store, pipeline, db: _db } = flaky_rig(2).await;
    let job = TradingCycleJob::new(pipeline, store.clone()).with_retries(3, StdDuration::from_millis(1));

    let mut cycles_with_orders = 0;
    for h in 11..=80 {
        let bar = start + Duration::hours(h);
        clock.set(bar + Duration::seconds(5));
        let cx = JobContext::detached(RunId::new(TradingCycleJob::NAME, bar), bar);
        let out = job.run(&cx).await.unwrap();
        assert!(!out.failed, "bar {h}: {} {:?} {}", out.summary, out.failure, out.detail);
        if h == 11 {
            assert_eq!(flaky.candle_faults.load(Ordering::SeqCst), 0, "two failed attempts, then a third");
            assert_eq!(out.detail["stages"][1]["status"], "ok", "{}", out.detail);
        }
        if out.detail["orders"].as_array().is_some_and(|o| !o.is_empty()) {
            cycles_with_orders += 1;
        }
    }
    assert!(cycles_with_orders > 5 && flaky.lost.load(Ordering::SeqCst) > 2, "the faults were exercised");
    // Every order the exchange executed is in the store exactly once, with its fill.
    let fills = store.fills_between(start, start + Duration::days(30)).await.unwrap();
    assert_eq!(fills.len(), flaky.orders.load(Ordering::SeqCst), "no lost fill, no duplicate");
    assert!(store.open_orders().await.unwrap().is_empty(), "no order left in an unknown state");
    let balances = flaky.balances().await.unwrap();
    for p in store.positions().await.unwrap() {
        let base = p.symbol.as_str().trim_end_matches("USDT");
        let held = balances.iter().find(|b| b.asset == base).map_or(Decimal::ZERO, |b| b.free);
        assert_eq!(p.qty, held, "{}: the bot's position equals the exchange's balance", p.symbol);
    }
}

/// A cycle that fails stores its cause in the ledger (the failure's kind, then its message), not the cycle's
/// summary line, and the failure is an event in the same transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_cycle_records_its_cause_in_the_ledger_and_the_event_log() {
    use mcbot_schedules::{FireOutcome, Runtime, RuntimeConfig, Schedule};
    use mcbot_stages::ports::{EventKind, EventQuery, JobStatus};
    let rig = flaky_rig(1_000).await;
    let job =
        TradingCycleJob::new(rig.pipeline.clone(), rig.store.clone()).with_retries(2, StdDuration::from_millis(1));
    let jobs: Vec<(Schedule, Arc<dyn Job>)> = vec![(Schedule::parse("5 0 * * * *").unwrap(), Arc::new(job))];
    let cfg = RuntimeConfig { grace: Duration::seconds(600), stale_after: Duration::seconds(900) };
    let runtime = Runtime::new(jobs, rig.store.clone(), rig.clock.clone(), cfg);
    let bar = rig.start + Duration::hours(11);
    rig.clock.set(bar + Duration::seconds(5));
    let out = runtime.fire_named(TradingCycleJob::NAME, bar + Duration::seconds(5)).await.unwrap();
    assert!(matches!(out, FireOutcome::Ran { status: JobStatus::Failed, .. }), "{out:?}");
    let run = &rig.store.recent_runs(Some(TradingCycleJob::NAME), 1).await.unwrap()[0];
    let error = run.error.clone().unwrap_or_default();
    assert!(error.starts_with("exchange: data_collection: "), "the cause, not the summary: {error}");
    assert!(error.contains("503"), "{error}");
    let failed = EventQuery { kinds: vec![EventKind::JobFailed], ..Default::default() };
    let events = rig.store.read_events(&failed).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.payload["kind"], "exchange");
    assert_eq!(events[0].event.run_id.as_deref(), Some(run.run_id.as_str()));
}
