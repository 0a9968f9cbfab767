//! The live code path against the loopback fake Binance with 10 % random faults. The guards of mode live are
//! tested in `live_guards`; this test composes the order path behind them: the real Binance adapter
//! as the exchange the pipeline sends orders to, a real SQL store, the trading-cycle job with reconciliation and
//! retries, and the job runtime. Real orders reach the fake, so this is where "an order is placed at most once
//! and every fill is booked" is checked against the exchange's own records, not against the bot's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::http::Method;
use chrono::{DateTime, Duration, Utc};
use mcbot::exchange::binance::{BinanceExchange, BinanceSettings};
use mcbot::store::{Backend, SqlStore};
use mcbot_schedules::jobs::{ReconcileJob, TradingCycleJob};
use mcbot_schedules::{FireOutcome, Job, Runtime, RuntimeConfig, Schedule};
use mcbot_stages::domain::{Decimal, OrderStatus, Side, Symbol, Timeframe};
use mcbot_stages::pipeline::execution::SizingParams;
use mcbot_stages::pipeline::risk::RiskLimits;
use mcbot_stages::pipeline::{Pipeline, PipelineConfig};
use mcbot_stages::ports::{Exchange, JobStatus, Store};
use mcbot_stages::strategy::registry;
use mcbot_stages::{Clock, ManualClock};

use crate::support::db::{DbGuard, TestStore, test_store};
use crate::support::fake_binance::{Commission, FakeBinance, FakeConfig, FakeTrade, Fault};

/// Cycles run while faults are injected.
const FAULTY_CYCLES: usize = 40;
/// The reconcile job fires every this many bars (the app's schedule is every 15 minutes on 1h bars).
const RECONCILE_EVERY: usize = 5;
const RECONCILE: &str = "reconcile";
const ORDER: &str = "/api/v3/order";
/// Faults scripted into order requests.
const ORDER_FAULTS: [Fault; 7] = [
    Fault::ServerErrorAfter,
    Fault::Timeout,
    Fault::DuplicateAfterAccept,
    Fault::ServerErrorBefore,
    Fault::Malformed,
    Fault::PartialFill { percent: 40 },
    Fault::DropConnection,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_cycles_against_fake_binance_with_ten_percent_faults_on_sqlite() {
    live_cycles_with_faults(Backend::Sqlite, 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_cycles_against_fake_binance_with_ten_percent_faults_on_postgres() {
    live_cycles_with_faults(Backend::Postgres, 5).await;
}

/// The live composition, as `App::build` would assemble it for mode live, over a fresh database.
struct Live {
    fake: FakeBinance,
    clock: Arc<ManualClock>,
    store: Arc<SqlStore>,
    runtime: Runtime,
    reconcile: Arc<ReconcileJob>,
    _kill_dir: tempfile::TempDir,
    // Last: the database outlives the store.
    _db: DbGuard,
}

impl Live {
    async fn start(backend: Backend) -> Live {
        let start = DateTime::parse_from_rfc3339("2024-03-01T00:00:30Z").unwrap().to_utc();
        let clock = Arc::new(ManualClock::new(start));
        let fake = FakeBinance::start(FakeConfig {
            market_clock: Some(clock.clone()),
            // Fees in the quote asset, so the base balances are exactly the sum of the fills.
            commission: Commission::Quote,
            // Only cash: any base balance at the end was bought by the bot.
            balances: vec![("USDT".into(), Decimal::from(10_000))],
            ..FakeConfig::new(clock.clone())
        })
        .await;
        // A `Timeout` fault holds its answer for 1.5 s: past this limit, so the adapter really loses the answer.
        let settings = BinanceSettings { request_timeout_ms: 1_000, ..fake.settings() };
        let exchange: Arc<dyn Exchange> = Arc::new(BinanceExchange::new(settings, clock.clone(), None).unwrap());

        let TestStore { store, guard, .. } = test_store(backend).await;
        let store = Arc::new(store);
        let dyn_store: Arc<dyn Store> = store.clone();
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let kill_dir = tempfile::tempdir().unwrap();
        let tf: Timeframe = "1m".parse().unwrap();
        let symbols = vec![Symbol::new("BTCUSDT").unwrap(), Symbol::new("ETHUSDT").unwrap()];

        // Momentum over 3 one-minute bars flips often; a 0.1 % band rebalances on small moves: many orders.
        let params = BTreeMap::from([("lookback".to_owned(), "3".to_owned())]);
        let strategy = registry::build("tsmom", &params, tf).unwrap();
        let pcfg = PipelineConfig {
            symbols: symbols.clone(),
            timeframe: tf,
            quote: "USDT".into(),
            stage_timeout: StdDuration::from_secs(30),
            lookback: 10,
            risk: RiskLimits {
                max_daily_loss_pct: Decimal::from(90),
                max_weekly_loss_pct: Decimal::from(90),
                max_drawdown_pct: Decimal::from(90),
                stop_loss_pct: None,
                take_profit_pct: None,
                kill_switch_file: kill_dir.path().join("KILL"),
                ..RiskLimits::default()
            },
            pretrade: Default::default(),
            sizing: SizingParams { rebalance_band_pct: Decimal::new(1, 1), ..SizingParams::default() },
            gate: Default::default(),
        };
        let pipeline = Arc::new(Pipeline::new(pcfg, exchange.clone(), dyn_store.clone(), dyn_clock.clone(), strategy));
        let reconcile = Arc::new(ReconcileJob::new(dyn_store.clone(), exchange.clone(), dyn_clock.clone(), symbols));
        let cycle = TradingCycleJob::new(pipeline, dyn_store.clone())
            .with_reconcile(reconcile.clone())
            .with_retries(3, StdDuration::from_millis(1));
        let jobs: Vec<(Schedule, Arc<dyn Job>)> = vec![
            (Schedule::parse(&tf.cron_after_close(5)).unwrap(), Arc::new(cycle)),
            (Schedule::parse("45 */5 * * * *").unwrap(), reconcile.clone()),
        ];
        let rcfg = RuntimeConfig { grace: Duration::seconds(600), stale_after: Duration::seconds(900) };
        let runtime = Runtime::new(jobs, dyn_store, dyn_clock, rcfg);
        Live { fake, clock, store, runtime, reconcile, _kill_dir: kill_dir, _db: guard }
    }

    /// Closes a bar and fires the trading cycle 5 s later, as the schedule would.
    async fn cycle(&self) -> (DateTime<Utc>, FireOutcome) {
        let open = self.fake.advance_bar();
        self.clock.set(open + Duration::seconds(5));
        (open, self.runtime.fire_named(TradingCycleJob::NAME, self.clock.now()).await.unwrap())
    }

    /// Fires the reconcile job in the bar opened at `open`.
    async fn fire_reconcile(&self, open: DateTime<Utc>) -> FireOutcome {
        self.clock.set(open + Duration::seconds(45));
        self.runtime.fire_named(RECONCILE, self.clock.now()).await.unwrap()
    }
}

async fn live_cycles_with_faults(backend: Backend, seed: u64) {
    let live = Live::start(backend).await;
    let Live { fake, clock, store, reconcile, .. } = &live;

    // What the app does at start-up: reconcile before the schedule resumes.
    assert!(reconcile.reconcile(None).await.unwrap().is_clean(), "a fresh account is in sync");

    // Every way an order request can go wrong happens at least once (every other order request, in turn), on top
    // of the 10 % random faults on every request.
    for fault in ORDER_FAULTS.iter().cloned() {
        fake.fault_after(Some(Method::POST), ORDER, 1, fault, 1);
    }
    fake.set_random_faults(0.10, seed);
    let mut ok = 0;
    for bar in 1..=FAULTY_CYCLES {
        match live.cycle().await {
            (_, FireOutcome::Ran { status: JobStatus::Succeeded, .. }) => ok += 1,
            (_, FireOutcome::Ran { .. }) => {} // failed closed: recorded in the ledger, alerted
            (_, other) => panic!("bar {bar}: {other:?}"),
        }
        if bar % RECONCILE_EVERY == 0 {
            let open = fake.forming_open();
            let out = live.fire_reconcile(open).await;
            assert!(matches!(out, FireOutcome::Ran { .. }), "bar {bar}: {out:?}");
        }
    }
    let faults = fake.faults_injected();
    let order_requests = fake.requests().iter().filter(|r| r.method == "POST" && r.path == ORDER).count();
    fake.clear_faults();

    // One clean bar and a reconciliation: whatever the faults left unknown is resolved from the exchange.
    let (open, last) = live.cycle().await;
    assert!(matches!(last, FireOutcome::Ran { .. }), "{last:?}");
    // Past the grace period, an order the exchange still does not know is one it never saw.
    clock.set(open + Duration::minutes(3));
    let report = reconcile.reconcile(None).await.unwrap();

    // (4) The test exercised what it claims to.
    let total_faults: u64 = faults.values().sum();
    assert!(total_faults >= 20, "faults were injected: {faults:?}");
    assert!(
        order_requests >= 2 * ORDER_FAULTS.len(),
        "every scripted order fault was injected: {order_requests} order request(s)"
    );
    let orders = fake.orders();
    assert!(orders.len() >= 10, "the strategy traded: {} order(s) at the exchange", orders.len());
    assert!(orders.iter().any(|o| o.side == Side::Sell), "it sold as well as bought");
    assert!(ok >= FAULTY_CYCLES / 4, "cycles get through the faults: {ok} of {FAULTY_CYCLES}");
    assert!(orders.iter().any(|o| o.status == "EXPIRED"), "a partial fill was booked too");

    // (1) Zero duplicate orders: one order at the exchange per client order id.
    let mut by_client_id: BTreeMap<&str, usize> = BTreeMap::new();
    for o in &orders {
        *by_client_id.entry(o.client_order_id.as_str()).or_default() += 1;
    }
    let duplicates: Vec<_> = by_client_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "zero duplicate orders: {duplicates:?}");

    // (2) Zero lost fills: every trade the exchange executed is a stored fill, and nothing else is.
    let fills = store.fills_between(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC).await.unwrap();
    let stored: BTreeMap<(String, String), _> =
        fills.iter().map(|f| ((f.symbol.to_string(), f.trade_id.clone()), f)).collect();
    assert_eq!(stored.len(), fills.len(), "a trade is stored once");
    let trades = fake.trades();
    let client_id_of: BTreeMap<i64, &str> = orders.iter().map(|o| (o.order_id, o.client_order_id.as_str())).collect();
    let lost: Vec<&FakeTrade> =
        trades.iter().filter(|t| !stored.contains_key(&(t.symbol.clone(), t.id.to_string()))).collect();
    assert!(lost.is_empty(), "zero lost fills: {} of {} trades not stored: {lost:?}", lost.len(), trades.len());
    for t in &trades {
        let f = stored[&(t.symbol.clone(), t.id.to_string())];
        assert_eq!(f.client_order_id.as_str(), client_id_of[&t.order_id], "trade {} booked to its order", t.id);
        assert_eq!((f.qty, f.price, f.fee), (t.qty, t.price, t.commission), "trade {} booked as executed", t.id);
        assert_eq!(f.side == Side::Buy, t.is_buyer, "trade {} side", t.id);
    }
    assert_eq!(fills.len(), trades.len(), "no fill the exchange did not execute");

    // Every order at the exchange is stored with the exchange's outcome; every other stored order never left.
    for o in &orders {
        let s = store
            .order(&mcbot_stages::domain::ClientOrderId::from_stored(o.client_order_id.clone()))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("order {} at the exchange is not stored", o.client_order_id));
        assert_eq!(s.filled_qty, o.executed_qty, "{}: stored fill quantity", o.client_order_id);
        assert_eq!(s.exchange_order_id, Some(o.order_id.to_string()), "{}", o.client_order_id);
        assert!(s.status.is_final(), "{}: {:?}", o.client_order_id, s.status);
    }
    let mut runs = store.recent_runs(Some(TradingCycleJob::NAME), 1000).await.unwrap();
    runs.sort_by_key(|r| r.scheduled_at);
    assert_eq!(runs.len(), FAULTY_CYCLES + 1, "one ledger row per bar");
    let mut stored_ids = BTreeSet::new();
    for r in &runs {
        for s in store.orders_of_run(&r.run_id).await.unwrap() {
            if !by_client_id.contains_key(s.client_order_id.as_str()) {
                assert!(
                    matches!(s.status, OrderStatus::Canceled | OrderStatus::Rejected) && s.filled_qty.is_zero(),
                    "an order the exchange never saw is closed unfilled: {s:?}"
                );
            }
            assert!(stored_ids.insert(s.client_order_id.to_string()), "one stored order per id");
        }
    }
    let orphans: Vec<_> = by_client_id.keys().filter(|id| !stored_ids.contains(**id)).collect();
    assert!(orphans.is_empty(), "every order at the exchange belongs to a run: {orphans:?}");

    // (3) Stored state equals the exchange's after reconciliation.
    assert!(report.is_clean(), "reconciliation is clean: {report:?}");
    assert!(report.corrected.is_empty(), "no drift needed correcting: {report:?}");
    assert!(store.open_orders().await.unwrap().is_empty(), "no order stuck open in the store");
    let balances = fake.balances();
    let positions: BTreeMap<String, Decimal> =
        store.positions().await.unwrap().into_iter().map(|p| (p.symbol.to_string(), p.qty)).collect();
    for (symbol, base) in [("BTCUSDT", "BTC"), ("ETHUSDT", "ETH")] {
        let held = balances.get(base).copied().unwrap_or_default();
        let pos = positions.get(symbol).copied().unwrap_or_default();
        assert_eq!(pos, held, "{symbol}: the stored position equals the exchange's {base} balance");
    }
    let state = store.load_state().await.unwrap();
    assert!(!state.safe_mode, "transient faults never latch safe mode: {:?}", state.safe_mode_reason);
}

/// Runs bars until the strategy tries its first order (the adapter's lookup before placing is its first
/// request about it); returns the open of that bar.
async fn until_first_order(live: &Live) -> DateTime<Utc> {
    for _ in 0..30 {
        let (open, _) = live.cycle().await;
        if live.fake.requests().iter().any(|r| r.path == ORDER) {
            return open;
        }
    }
    panic!("the strategy tried no order in 30 bars");
}

/// Asserts that every order the bot stored reached Binance exactly once under its id, filled and booked, and that
/// the bot is in sync with Binance and trading.
async fn placed_once_and_booked(live: &Live) {
    let mut stored = Vec::new();
    for run in live.store.recent_runs(Some(TradingCycleJob::NAME), 1000).await.unwrap() {
        stored.extend(live.store.orders_of_run(&run.run_id).await.unwrap());
    }
    assert!(!stored.is_empty(), "the order is stored");
    assert_eq!(stored.len(), live.fake.orders().len(), "the bot's orders are Binance's");
    for o in &stored {
        let at_binance = live.fake.orders_with_client_id(o.client_order_id.as_str());
        assert_eq!(at_binance.len(), 1, "{} placed exactly once: {at_binance:?}", o.client_order_id);
        assert_eq!(o.status, OrderStatus::Filled, "{o:?}");
        assert_eq!(o.exchange_order_id, Some(at_binance[0].order_id.to_string()));
    }
    let report = live.reconcile.reconcile(None).await.unwrap();
    assert!(report.is_clean() && report.corrected.is_empty(), "{report:?}");
    assert!(!live.store.load_state().await.unwrap().safe_mode);
}

/// The order request is refused twice before Binance takes it (503 on the submission and on the resubmission):
/// after looking the id up each time the adapter knows the order was not placed and says so, and the retried
/// cycle places it under the same client order id. Before, the adapter called this "outcome unknown" and the
/// cycle halted with an order pending that Binance would never know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_refused_before_binance_took_it_is_retried_under_the_same_id() {
    let live = Live::start(Backend::Sqlite).await;
    live.fake.fault_next_n(Some(Method::POST), ORDER, Fault::ServerErrorBefore, 2);
    until_first_order(&live).await;
    let runs = live.store.recent_runs(Some(TradingCycleJob::NAME), 1).await.unwrap();
    assert_eq!(runs[0].status, JobStatus::Succeeded, "the retried cycle got through: {:?}", runs[0]);
    let posts = live.fake.requests().into_iter().filter(|r| r.method == "POST" && r.path == ORDER).count();
    let orders = live.fake.orders().len();
    assert_eq!(posts - orders, 2, "the two refused requests are the only ones that did not become an order");
    placed_once_and_booked(&live).await;
}

/// The lookup the adapter makes before sending an order (is this id already placed?) gets an unreadable answer.
/// Nothing was sent, so the order is "not placed, retry", and the retried cycle places it once. Before, the
/// malformed answer surfaced as-is, the pipeline took it for an unknown outcome and halted with the order pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_lookup_before_placing_is_retried_not_taken_for_an_unknown_outcome() {
    let live = Live::start(Backend::Sqlite).await;
    live.fake.fault_next_n(Some(Method::GET), ORDER, Fault::Malformed, 1);
    until_first_order(&live).await;
    let runs = live.store.recent_runs(Some(TradingCycleJob::NAME), 1).await.unwrap();
    assert_eq!(runs[0].status, JobStatus::Succeeded, "the retried cycle got through: {:?}", runs[0]);
    assert!(live.fake.faults_injected().contains_key("Malformed"), "the fault was injected");
    placed_once_and_booked(&live).await;
}

/// Binance takes the order but answers "duplicate order", and every lookup of the id fails for a while. The
/// order exists, so its outcome is unknown: it stays pending and reconciliation books it once a lookup gets
/// through. Before, the adapter passed the lookup's 503 on as "retry": the pipeline recorded the filled order as
/// cancelled and never placed, and once the retries were spent the position Binance holds was an orphan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_order_whose_lookups_fail_stays_unknown_until_reconciliation_books_it() {
    let live = Live::start(Backend::Sqlite).await;
    live.fake.fault_next_n(Some(Method::POST), ORDER, Fault::DuplicateAfterAccept, 1);
    // After the lookup before placing: the adapter's three, the pipeline's own, the first reconciliation's.
    live.fake.fault_after(Some(Method::GET), ORDER, 1, Fault::ServerErrorBefore, 5);
    let open = until_first_order(&live).await;
    let pending = live.store.open_orders().await.unwrap();
    assert_eq!(pending.len(), 1, "the order's outcome is unknown, not \"not placed\": {pending:?}");
    assert_eq!(live.fake.orders_with_client_id(pending[0].client_order_id.as_str()).len(), 1);

    let first = live.fire_reconcile(open).await;
    assert!(matches!(first, FireOutcome::Ran { status: JobStatus::Failed, .. }), "lookup still failing: {first:?}");
    let (open, _) = live.cycle().await;
    let second = live.fire_reconcile(open).await;
    assert!(matches!(second, FireOutcome::Ran { status: JobStatus::Succeeded, .. }), "{second:?}");
    let booked = live.store.order(&pending[0].client_order_id).await.unwrap().unwrap();
    assert_eq!(booked.status, OrderStatus::Filled, "{booked:?}");
    let base = if booked.symbol.as_str() == "BTCUSDT" { "BTC" } else { "ETH" };
    let position = live.store.positions().await.unwrap().into_iter().find(|p| p.symbol == booked.symbol).unwrap();
    assert_eq!(position.qty, live.fake.balances()[base], "the position Binance holds is the bot's");
    placed_once_and_booked(&live).await;
}

/// The narrowest path to the state the fault runs can end in: an order request answered 503 before Binance took
/// it, and the adapter's last lookup failing too, so the cycle halts with the order pending ("outcome unknown").
/// Binance never saw the order: by the port's contract `Exchange::order` answers `None` for it from then on, so a
/// later reconciliation knows it was never placed. It must close it (unfilled) and leave the bot trading, not
/// report it "unresolved" for ever and latch safe mode (which only a person can clear) over one lost answer.
/// Within the grace period the order may only be slow to show: entries stay blocked, safe mode stays off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_binance_never_saw_is_closed_by_reconciliation_not_left_pending() {
    let live = Live::start(Backend::Sqlite).await;
    let Live { fake, store, reconcile, .. } = &live;
    // The first order request: 503, nothing done. Order lookups: the one before placing and the adapter's first
    // two after the 503 answer "no such order", its third fails; the pipeline's own lookup then says "none".
    fake.fault_next_n(Some(Method::POST), ORDER, Fault::ServerErrorBefore, 1);
    fake.fault_after(Some(Method::GET), ORDER, 3, Fault::ServerErrorBefore, 1);
    let open = until_first_order(&live).await;
    let pending = store.open_orders().await.unwrap();
    assert_eq!(pending.len(), 1, "the cycle halted with its order's outcome unknown: {pending:?}");
    let id = pending[0].client_order_id.to_string();
    assert!(fake.orders_with_client_id(&id).is_empty(), "Binance never took {id}");

    let early = reconcile.reconcile_and_guard(None).await.unwrap();
    assert_eq!(early.awaiting_orders, std::slice::from_ref(&id), "40 s after the 503 it may still show up: {early:?}");
    let state = store.load_state().await.unwrap();
    assert!(!state.safe_mode && state.tripped.contains_key("order_outcome_unknown"), "entries blocked: {state:?}");

    let out = live.fire_reconcile(open + Duration::minutes(3)).await;
    assert!(matches!(out, FireOutcome::Ran { status: JobStatus::Succeeded, .. }), "reconciliation is clean: {out:?}");
    assert!(store.open_orders().await.unwrap().is_empty(), "{id} is closed, not left pending");
    let closed = store.order(&pending[0].client_order_id).await.unwrap().unwrap();
    assert!(
        matches!(closed.status, OrderStatus::Canceled | OrderStatus::Rejected) && closed.filled_qty.is_zero(),
        "{closed:?}"
    );
    assert!(!store.load_state().await.unwrap().safe_mode, "one lost answer does not stop the bot");
    assert!(reconcile.reconcile(None).await.unwrap().is_clean());
}
