//! The trading pipeline end to end on virtual time: the real scheduler runtime, the four stages, the simulated
//! exchange and a real store (SQLite file and PostgreSQL), with no real sleeping.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use mcbot::app::{App, open_store};
use mcbot::config::Config;
use mcbot_schedules::FireOutcome;
use mcbot_schedules::jobs::TradingCycleJob;
use mcbot_stages::domain::{Decimal, Side, Symbol};
use mcbot_stages::pipeline::StageSelection;
use mcbot_stages::pipeline::stage::{StageName, StageStatus};
use mcbot_stages::ports::{EventKind, EventQuery, JobStatus, Store};
use mcbot_stages::{Clock, ManualClock};

use crate::support::db::{fresh_pg_url, fresh_sqlite_url};

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().to_utc()
}

/// Four symbols, hourly bars, a fast strategy so it trades often, hourly health and reconcile.
fn config(data_dir: &std::path::Path) -> Config {
    let mut cfg = Config::default();
    cfg.market.symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"].iter().map(|s| Symbol::new(s).unwrap()).collect();
    cfg.sim.start = start();
    cfg.sim.tick_size = Decimal::new(1, 4);
    cfg.sim.bar_vol = 0.02;
    cfg.strategy.params.insert("lookback".into(), toml::Value::Integer(6));
    cfg.pipeline.lookback_bars = 12;
    cfg.risk.max_daily_loss_pct = Decimal::from(50);
    cfg.risk.max_weekly_loss_pct = Decimal::from(50);
    cfg.risk.max_drawdown_pct = Decimal::from(90);
    cfg.risk.kill_switch_file = data_dir.join("KILL");
    cfg.schedule.health = "30 0 * * * *".into();
    cfg.schedule.reconcile = "45 30 * * * *".into();
    cfg.database.data_dir = data_dir.to_path_buf();
    cfg
}

async fn app(url: &str, cfg: &Config, clock: Arc<ManualClock>) -> App {
    let store = open_store(url).await.expect("store opens and migrates");
    App::build(cfg.clone(), store, clock).await.expect("app builds")
}

/// Jumps the clock from fire to fire until `until`, ticking the runtime at each: what the production driver
/// does on wall-clock time.
async fn drive(app: &App, clock: &ManualClock, until: DateTime<Utc>) {
    while let Some(next) = app.runtime.next_fire_after(clock.now()) {
        if next > until {
            break;
        }
        clock.set(next);
        for (job, outcome) in app.runtime.tick().await {
            if let FireOutcome::Ran { status, summary, .. } = &outcome {
                assert_ne!(*status, JobStatus::Failed, "{job} failed at {next}: {summary}");
            }
        }
    }
}

/// Orders as (client id, symbol, side, qty, price): what must be identical between two runs.
async fn order_book(store: &dyn Store, runs: &[String]) -> Vec<(String, String, Side, Decimal, Option<Decimal>)> {
    let mut out = Vec::new();
    for r in runs {
        for o in store.orders_of_run(r).await.unwrap() {
            out.push((o.client_order_id.to_string(), o.symbol.to_string(), o.side, o.filled_qty, o.avg_price));
        }
    }
    out
}

async fn cycle_run_ids(store: &dyn Store) -> Vec<String> {
    let mut runs: Vec<_> = store.recent_runs(Some(TradingCycleJob::NAME), 10_000).await.unwrap();
    runs.sort_by_key(|r| r.scheduled_at);
    runs.into_iter().map(|r| r.run_id).collect()
}

async fn five_hundred_bars(url: &str, data_dir: &std::path::Path) {
    let cfg = config(data_dir);
    // Starting 15 minutes after bar 20's cycle fire: beyond the 10-minute grace, so start-up catch-up does not
    // trade that bar, and bars 21..=520 follow.
    let clock = Arc::new(ManualClock::new(start() + Duration::hours(20) + Duration::minutes(15)));
    let app = app(url, &cfg, clock.clone()).await;
    let caught_up = app.runtime.catch_up().await;
    // Reports catch up at any age; nothing else is within grace.
    assert!(caught_up.iter().all(|(job, _)| job.starts_with("report-")), "nothing within grace: {caught_up:?}");
    let end = start() + Duration::hours(520) + Duration::minutes(1);
    drive(&app, &clock, end).await;
    let store = app.store.as_ref();

    let runs = store.recent_runs(Some(TradingCycleJob::NAME), 10_000).await.unwrap();
    assert_eq!(runs.len(), 500, "one trading cycle per bar");
    assert!(runs.iter().all(|r| r.status == JobStatus::Succeeded && r.attempt == 1));
    let keys: BTreeSet<_> = runs.iter().map(|r| r.scheduled_at).collect();
    assert_eq!(keys.len(), 500, "each bar exactly once");
    assert!(runs.iter().all(|r| r.scheduled_at.timestamp() % 3600 == 0), "keyed on the bar close");

    let ids = cycle_run_ids(store).await;
    let orders = order_book(store, &ids).await;
    assert!(orders.len() > 50, "the strategy trades on a random walk: {} orders", orders.len());
    let unique: BTreeSet<_> = orders.iter().map(|o| o.0.clone()).collect();
    assert_eq!(unique.len(), orders.len(), "no client order id twice");

    // The bot's books agree with the exchange's to the last unit.
    let report = app.reconcile.reconcile(None).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    let state = store.load_state().await.unwrap();
    let cash: Decimal =
        app.exchange.balances().await.unwrap().iter().filter(|b| b.asset == "USDT").map(|b| b.free).sum();
    assert_eq!(state.cash, Some(cash));
    assert_eq!(state.last_bar, Some(start() + Duration::hours(520)));
    assert!(!state.safe_mode);

    let snaps = store.equity_between(start(), end).await.unwrap();
    assert_eq!(snaps.len(), 500);
    let health = store.recent_runs(Some("health"), 10_000).await.unwrap();
    assert_eq!(health.len(), 500);
    assert!(health.iter().all(|r| r.status == JobStatus::Succeeded), "data stayed fresh");
    let daily = store.recent_runs(Some("report-daily"), 100).await.unwrap();
    // A report per midnight passed, and the one missed before the start (reports catch up at any age).
    assert_eq!(daily.len(), 22, "a daily report per midnight passed");
    let weekly = store.recent_runs(Some("report-weekly"), 100).await.unwrap();
    assert_eq!(weekly.len(), 4);
    let day_pnl = &daily.iter().find(|r| r.scheduled_at.to_rfc3339().starts_with("2024-01-10")).unwrap().outcome;
    assert!(day_pnl.as_ref().is_some_and(|o| o["figures"]["trades"].as_str().is_some()), "{day_pnl:?}");
    event_log_matches_the_books(store, &ids).await;
}

/// Every stored order has exactly one `order_placed` event and every stored fill one `order_filled` event; ids
/// increase without a gap (one writer); each cycle is reported once started and once finished.
async fn event_log_matches_the_books(store: &dyn Store, runs: &[String]) {
    let events = store.read_events(&EventQuery::default()).await.unwrap();
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=i64::try_from(ids.len()).unwrap()).collect::<Vec<_>>(), "gap-free and increasing");
    let of = |kind: EventKind| events.iter().filter(move |e| e.event.kind == kind);
    let mut placed: Vec<String> =
        of(EventKind::OrderPlaced).map(|e| e.event.payload["client_order_id"].as_str().unwrap().to_owned()).collect();
    let mut stored = Vec::new();
    for r in runs {
        stored.extend(store.orders_of_run(r).await.unwrap().into_iter().map(|o| o.client_order_id.to_string()));
    }
    placed.sort();
    stored.sort();
    assert_eq!(placed, stored, "one order event per stored order");
    let mut filled: Vec<(String, String)> = of(EventKind::OrderFilled)
        .map(|e| {
            (e.event.symbol.as_ref().unwrap().to_string(), e.event.payload["trade_id"].as_str().unwrap().to_owned())
        })
        .collect();
    let mut fills: Vec<(String, String)> = store
        .fills_between(start(), start() + Duration::days(60))
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.symbol.to_string(), f.trade_id))
        .collect();
    filled.sort();
    fills.sort();
    assert!(!fills.is_empty());
    assert_eq!(filled, fills, "one fill event per stored fill");
    assert_eq!(of(EventKind::CycleStarted).count(), runs.len());
    assert_eq!(of(EventKind::CycleFinished).count(), runs.len());
    let opened = of(EventKind::PositionOpened).count();
    let closed = of(EventKind::PositionClosed).count();
    assert!(opened > 0 && closed > 0 && opened >= closed, "positions open and close: {opened} / {closed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_runs_500_bars_on_virtual_time_sqlite() {
    let db = fresh_sqlite_url();
    five_hundred_bars(db.url(), db.dir()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_runs_500_bars_on_virtual_time_postgres() {
    let db = fresh_pg_url().await;
    let dir = tempfile::tempdir().unwrap();
    five_hundred_bars(db.url(), dir.path()).await;
}

async fn restart(url_a: &str, url_b: &str, dir_a: &std::path::Path, dir_b: &std::path::Path) {
    let end = start() + Duration::hours(140) + Duration::minutes(1);
    let middle = start() + Duration::hours(80) + Duration::minutes(17);

    // A: uninterrupted.
    let clock_a = Arc::new(ManualClock::new(start() + Duration::hours(20)));
    let a = app(url_a, &config(dir_a), clock_a.clone()).await;
    drive(&a, &clock_a, end).await;

    // B: stopped in the middle, every in-memory object dropped, reopened from the store, continued.
    let clock_b = Arc::new(ManualClock::new(start() + Duration::hours(20)));
    let b = app(url_b, &config(dir_b), clock_b.clone()).await;
    drive(&b, &clock_b, middle).await;
    let before = cycle_run_ids(b.store.as_ref()).await;
    drop(b);
    let b = app(url_b, &config(dir_b), clock_b.clone()).await;
    // The restarted runtime first re-fires the bar it already did: the ledger refuses it.
    let again = b.runtime.fire_named(TradingCycleJob::NAME, start() + Duration::hours(80)).await.unwrap();
    assert!(matches!(again, FireOutcome::AlreadyDone { .. }), "{again:?}");
    let replay = b
        .pipeline
        .run_cycle(
            &mcbot_stages::domain::RunId::from_stored(before.last().unwrap().clone()),
            start() + Duration::hours(80),
            StageSelection::All,
            None,
        )
        .await
        .unwrap();
    assert!(replay.already_processed && replay.orders.is_empty(), "the persisted last bar guards the pipeline too");
    drive(&b, &clock_b, end).await;

    let (sa, sb) = (a.store.as_ref(), b.store.as_ref());
    let (ra, rb) = (cycle_run_ids(sa).await, cycle_run_ids(sb).await);
    assert_eq!(ra, rb, "same runs");
    let (oa, ob) = (order_book(sa, &ra).await, order_book(sb, &rb).await);
    assert!(!oa.is_empty());
    assert_eq!(oa, ob, "same orders, none twice");
    let (mut pa, mut pb) = (sa.positions().await.unwrap(), sb.positions().await.unwrap());
    pa.sort_by(|x, y| x.symbol.cmp(&y.symbol));
    pb.sort_by(|x, y| x.symbol.cmp(&y.symbol));
    assert_eq!(pa, pb, "same positions");
    let (sta, stb) = (sa.load_state().await.unwrap(), sb.load_state().await.unwrap());
    assert_eq!(sta, stb, "same state (cash, peak equity, breakers, last bar)");
    assert_eq!(a.exchange.balances().await.unwrap(), b.exchange.balances().await.unwrap(), "same exchange account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_continues_with_no_duplicate_and_the_same_final_state_sqlite() {
    let (a, b) = (fresh_sqlite_url(), fresh_sqlite_url());
    restart(a.url(), b.url(), a.dir(), b.dir()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_continues_with_no_duplicate_and_the_same_final_state_postgres() {
    let (a, b) = (fresh_pg_url().await, fresh_pg_url().await);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    restart(a.url(), b.url(), da.path(), db.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_risk_check_places_no_entry_but_lets_exits_through() {
    let db = fresh_sqlite_url();
    let mut cfg = config(db.dir());
    cfg.risk.stop_loss_pct = Some(Decimal::new(1, 2)); // 0.01 %: any held position that dips is exited
    let clock = Arc::new(ManualClock::new(start() + Duration::hours(20)));
    let app = app(db.url(), &cfg, clock.clone()).await;
    drive(&app, &clock, start() + Duration::hours(60) + Duration::minutes(1)).await;
    let held_before: Vec<_> = app.store.positions().await.unwrap().into_iter().filter(|p| !p.qty.is_zero()).collect();

    std::fs::write(db.dir().join("KILL"), b"stop").unwrap();
    let mut sells = 0;
    for h in 61..=90 {
        let bar = start() + Duration::hours(h);
        clock.set(bar + Duration::seconds(5));
        let run = mcbot_stages::domain::RunId::new(TradingCycleJob::NAME, bar);
        let r = app.pipeline.run_cycle(&run, bar, StageSelection::All, None).await.unwrap();
        assert_eq!(r.stages[0].stage, StageName::RiskCheck);
        assert_eq!(r.stages[0].status, StageStatus::Restricted, "{:?}", r.stages[0]);
        assert!(r.blocked_by.iter().any(|b| b.contains("kill switch")));
        let skipped: Vec<_> = r.stages[1..3].iter().map(|s| s.status).collect();
        assert_eq!(skipped, [StageStatus::Skipped, StageStatus::Skipped], "no data fetched, no analysis");
        assert!(r.orders.iter().all(|o| o.side == Side::Sell), "no entry while halted: {:?}", r.orders);
        sells += r.orders.len();
    }
    assert!(!held_before.is_empty() && sells > 0, "exits stay allowed ({} held, {sells} sells)", held_before.len());
    let query = EventQuery { kinds: vec![EventKind::BreakerTripped], ..Default::default() };
    let events = app.store.read_events(&query).await.unwrap();
    let kill = events.iter().filter(|e| e.event.payload["breaker"] == "kill_switch").count();
    assert_eq!(kill, 1, "recorded once, not every cycle");

    std::fs::remove_file(db.dir().join("KILL")).unwrap();
    let bar = start() + Duration::hours(91);
    clock.set(bar + Duration::seconds(5));
    let r = app
        .pipeline
        .run_cycle(&mcbot_stages::domain::RunId::new(TradingCycleJob::NAME, bar), bar, StageSelection::All, None)
        .await
        .unwrap();
    assert_eq!(r.stages[0].status, StageStatus::Ok, "removing the file re-enables entries");
    assert_eq!(r.stages.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_quick_filter_gate_blocks_entries_with_the_reason_recorded() {
    let db = fresh_sqlite_url();
    let mut cfg = config(db.dir());
    cfg.strategy.gate.enabled = true;
    cfg.strategy.gate.window_bars = 100;
    cfg.strategy.gate.min_return_pct = 1e9; // unreachable: every entry is refused
    let clock = Arc::new(ManualClock::new(start() + Duration::hours(100) + Duration::minutes(15)));
    let app = app(db.url(), &cfg, clock.clone()).await;
    drive(&app, &clock, start() + Duration::hours(130)).await;
    let runs = cycle_run_ids(app.store.as_ref()).await;
    assert_eq!(runs.len(), 30);
    assert!(order_book(app.store.as_ref(), &runs).await.is_empty(), "no entry through a failing gate");
    let signals = app.store.signals_of_run(runs.last().unwrap()).await.unwrap();
    assert!(signals.iter().any(|s| s.reason.contains("quick-filter gate over 100 bars failed: return")), "{signals:?}");
}
