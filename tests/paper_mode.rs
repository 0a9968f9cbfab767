//! Mode paper against the loopback fake Binance: real market data over REST (with faults), fills simulated by
//! walking the venue's order book, never an order sent to the exchange.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::http::Method;
use chrono::{DateTime, Duration, Utc};
use mcbot::app::{App, open_store};
use mcbot::config::{Config, Mode};
use mcbot::market_stream::MarketStream;
use mcbot_schedules::FireOutcome;
use mcbot_schedules::jobs::TradingCycleJob;
use mcbot_stages::ManualClock;
use mcbot_stages::domain::{Decimal, OrderStatus, Symbol};
use mcbot_stages::ports::{JobStatus, Store};

use std::process::Command;

use crate::support::cli::{command, paper_run_once, workdir};
use crate::support::db::{SqliteTestDb, fresh_pg_url, fresh_sqlite_url};
use crate::support::fake_binance::{FakeBinance, FakeConfig, Fault};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paper_cycles_against_fake_binance_with_ten_percent_faults() {
    let Paper { clock, fake, app, _db } = Paper::start().await;
    assert_eq!(app.exchange.name(), "paper:binance");

    fake.set_random_faults(0.10, 7);
    let mut ok = 0;
    for _ in 0..40 {
        let open = fake.advance_bar();
        clock.set(open + Duration::seconds(5));
        match app.runtime.fire_named(TradingCycleJob::NAME, clock_now(&clock)).await.unwrap() {
            FireOutcome::Ran { status: JobStatus::Succeeded, .. } => ok += 1,
            FireOutcome::Ran { .. } => {} // failed closed: recorded, nothing half-done
            other => panic!("{other:?}"),
        }
    }
    fake.clear_faults();
    assert!(!fake.faults_injected().is_empty(), "faults were injected");
    assert!(ok >= 20, "most cycles get through the faults: {ok} of 40");

    let store = app.store.as_ref();
    let mut runs = store.recent_runs(Some(TradingCycleJob::NAME), 1000).await.unwrap();
    runs.sort_by_key(|r| r.scheduled_at);
    assert_eq!(runs.len(), 40, "one ledger row per bar");
    let mut ids = Vec::new();
    for r in &runs {
        ids.extend(store.orders_of_run(&r.run_id).await.unwrap().into_iter().map(|o| o.client_order_id.to_string()));
    }
    assert!(!ids.is_empty(), "the strategy traded");
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "zero duplicate orders");
    assert!(store.open_orders().await.unwrap().is_empty(), "no order in an unknown state");
    assert!(fake.orders().is_empty(), "paper never sends an order to the venue");
    let report = app.reconcile.reconcile(None).await.unwrap();
    assert!(report.is_clean(), "stored positions equal the paper account: {report:?}");
}

/// A garbled order book answered while a paper order is being filled: nothing left the process, so the order was
/// not placed; the cycle runs again under the same run id and the order fills. Never "outcome unknown", so no
/// breaker trips and entries stay allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_book_while_filling_a_paper_order_is_a_failed_read_not_an_unknown_outcome() {
    let Paper { clock, fake, app, _db } = Paper::start().await;
    let store = app.store.clone();
    let malformed = || fake.faults_injected().get("Malformed").copied().unwrap_or(0);
    let mut hit = None;
    for _ in 0..10 {
        fake.clear_faults();
        // Execution reads the book twice per order: the liquidity gate (which tolerates a failed read), then the
        // paper fill. The second read is the one garbled.
        fake.fault_after(Some(Method::GET), "/api/v3/depth", 1, Fault::Malformed, 1);
        let open = fake.advance_bar();
        clock.set(open + Duration::seconds(5));
        let before = malformed();
        let out = app.runtime.fire_named(TradingCycleJob::NAME, clock_now(&clock)).await.unwrap();
        let FireOutcome::Ran { run_id, status, summary, .. } = out else { panic!("{out:?}") };
        assert_eq!(status, JobStatus::Succeeded, "{summary}");
        if malformed() > before {
            hit = Some(run_id);
            break;
        }
    }
    fake.clear_faults();
    let run_id = hit.expect("a paper order met the garbled book within 10 bars");
    let orders = store.orders_of_run(&run_id).await.unwrap();
    assert!(!orders.is_empty(), "the retried cycle placed its orders");
    assert!(orders.iter().all(|o| o.status == OrderStatus::Filled), "{orders:?}");
    let state = store.load_state().await.unwrap();
    assert!(!state.tripped.contains_key("order_outcome_unknown"), "{:?}", state.tripped);
    let events = store.read_events(&Default::default()).await.unwrap();
    let unknown = mcbot_stages::ports::EventKind::OrderOutcomeUnknown;
    assert!(events.iter().all(|e| e.event.kind != unknown), "{events:?}");
    assert!(store.open_orders().await.unwrap().is_empty(), "no order left pending");
    assert!(fake.orders().is_empty(), "paper never sends an order to the venue");
}

const START: &str = "2024-03-01T00:00:30Z";

/// The fake Binance on virtual time and the app in mode paper over a fresh SQLite file.
struct Paper {
    clock: Arc<ManualClock>,
    fake: FakeBinance,
    app: App,
    _db: SqliteTestDb,
}

impl Paper {
    async fn start() -> Self {
        let clock = Arc::new(ManualClock::new(START.parse().unwrap()));
        let fake =
            FakeBinance::start(FakeConfig { market_clock: Some(clock.clone()), ..FakeConfig::new(clock.clone()) })
                .await;
        let db = fresh_sqlite_url();
        let app = paper_app(&fake, &clock, db.url(), db.dir()).await;
        Self { clock, fake, app, _db: db }
    }
}

/// Mode paper on two 1m symbols against `fake`, a strategy that trades often, wide breakers, and only the
/// trading cycle on a near schedule.
async fn paper_app(fake: &FakeBinance, clock: &Arc<ManualClock>, url: &str, dir: &std::path::Path) -> App {
    let mut cfg = Config { mode: Mode::Paper, ..Config::default() };
    cfg.market.symbols = vec![Symbol::new("BTCUSDT").unwrap(), Symbol::new("ETHUSDT").unwrap()];
    cfg.market.timeframe = "1m".parse().unwrap();
    cfg.exchange.binance = fake.settings();
    cfg.strategy.params.insert("lookback".into(), toml::Value::Integer(3));
    cfg.pipeline.lookback_bars = 10;
    cfg.pipeline.retry_delay_ms = 1;
    cfg.risk.max_daily_loss_pct = Decimal::from(90);
    cfg.risk.max_weekly_loss_pct = Decimal::from(90);
    cfg.risk.max_drawdown_pct = Decimal::from(90);
    cfg.risk.kill_switch_file = dir.join("KILL");
    cfg.sizing.rebalance_band_pct = Decimal::ONE;
    cfg.schedule.health = "0 0 0 1 * *".into();
    cfg.schedule.reconcile = "0 0 0 1 * *".into();
    cfg.database.data_dir = dir.to_path_buf();
    App::build(cfg, open_store(url).await.unwrap(), clock.clone()).await.unwrap()
}

/// Two paper replicas on one PostgreSQL database take turns at the bars (as the ledger hands each bar to one of
/// them): each sees the other's fills, so both reconcile clean after every bar, their accounts agree, and neither
/// writes a stale cash figure into the shared state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paper_replicas_on_one_database_share_one_account() {
    let clock = Arc::new(ManualClock::new(START.parse().unwrap()));
    let fake =
        FakeBinance::start(FakeConfig { market_clock: Some(clock.clone()), ..FakeConfig::new(clock.clone()) }).await;
    let db = fresh_pg_url().await;
    let dir = tempfile::tempdir().unwrap();
    let a = paper_app(&fake, &clock, db.url(), dir.path()).await;
    let b = paper_app(&fake, &clock, db.url(), dir.path()).await;
    let mut fills = 0;
    for bar in 0..12 {
        let open = fake.advance_bar();
        clock.set(open + Duration::seconds(5));
        let (runner, other) = if bar % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let out = runner.runtime.fire_named(TradingCycleJob::NAME, clock_now(&clock)).await.unwrap();
        assert!(matches!(out, FireOutcome::Ran { status: JobStatus::Succeeded, .. }), "bar {bar}: {out:?}");
        for (name, app) in [("runner", runner), ("other", other)] {
            let report = app.reconcile.reconcile(None).await.unwrap();
            assert!(report.is_clean(), "bar {bar}: the {name} replica reconciles clean: {report:?}");
        }
        assert_eq!(a.exchange.balances().await.unwrap(), b.exchange.balances().await.unwrap(), "bar {bar}");
        fills = a.store.fills_between(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC).await.unwrap().len();
    }
    assert!(fills >= 4, "both replicas traded: {fills} fills");
    let state = a.store.load_state().await.unwrap();
    assert!(!state.safe_mode, "no drift latched safe mode: {:?}", state.safe_mode_reason);
    assert!(fake.orders().is_empty(), "paper never sends an order to the venue");
}

/// The closed klines on the WebSocket start the cycle at the bar close; the cron fire at close + 5 s finds it
/// done. With the stream down, the cron fire trades the bar from REST data: no bar is missed or traded twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_bars_on_the_stream_start_the_cycle_and_cron_is_the_fallback() {
    let Paper { clock, fake, app, _db } = Paper::start().await;
    let start = START.parse::<DateTime<Utc>>().unwrap();
    let market = MarketStream::start(&app).expect("binance has a stream");
    let mut cycles = market.cycles();
    wait_for("stream connected", || fake.ws_connections() == 1).await;

    let mut traded = Vec::new();
    for _ in 0..3 {
        let close = fake.advance_bar();
        // The cycle for the bar just closed runs now, 5 s before its cron fire.
        let cycle = loop {
            let c = tokio::time::timeout(std::time::Duration::from_secs(20), cycles.recv()).await.unwrap().unwrap();
            if c.bar.close == close {
                break c;
            }
        };
        assert!(matches!(cycle.outcome, FireOutcome::Ran { status: JobStatus::Succeeded, .. }), "{cycle:?}");
        assert!(cycle.latency.is_some_and(|l| l >= Duration::zero()), "Analysis ran after the bar: {cycle:?}");
        clock.set(close + Duration::seconds(5));
        let fallback = app.runtime.tick_job(TradingCycleJob::NAME).await;
        assert!(matches!(fallback, Some(FireOutcome::AlreadyDone { .. })), "{fallback:?}");
        traded.push(close);
    }

    // The stream goes away mid-bar; the next bar reaches the pipeline through the cron fire and REST.
    fake.ws_set_available(false);
    fake.ws_drop_all();
    wait_for("stream noticed the drop", || !market.stream().stats().connected).await;
    let close = fake.advance_bar();
    clock.set(close + Duration::seconds(5));
    let fallback = app.runtime.tick_job(TradingCycleJob::NAME).await;
    assert!(matches!(fallback, Some(FireOutcome::Ran { status: JobStatus::Succeeded, .. })), "{fallback:?}");
    traded.push(close);

    let runs = app.store.recent_runs(Some(TradingCycleJob::NAME), 100).await.unwrap();
    let mut bars: Vec<_> = runs.iter().filter(|r| r.scheduled_at > start).map(|r| r.scheduled_at).collect();
    bars.sort();
    assert_eq!(bars, traded, "one run per bar, whichever trigger came first");
    assert_eq!(app.store.load_state().await.unwrap().last_bar, Some(close));
    market.shutdown().await;
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The environment that points the shipped config at `fake`: two 1m symbols, a short lookback.
fn binance_env(fake: &FakeBinance) -> Vec<(&'static str, String)> {
    vec![
        ("MCBOT_EXCHANGE__BINANCE__REST_URL", fake.rest_url.clone()),
        ("MCBOT_EXCHANGE__BINANCE__WS_URL", fake.ws_url.clone()),
        ("MCBOT_MARKET__SYMBOLS", r#"["BTCUSDT", "ETHUSDT"]"#.into()),
        ("MCBOT_MARKET__TIMEFRAME", "1m".into()),
        ("MCBOT_STRATEGY__PARAMS__LOOKBACK", "3".into()),
        ("MCBOT_PIPELINE__LOOKBACK_BARS", "10".into()),
    ]
}

/// `mcbot scheduler --mode paper` as deployed: the binary follows the fake's kline stream, the bar the fake
/// closes is traded as soon as its klines arrive (the log carries the latency), and SIGTERM stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_trades_a_bar_as_soon_as_the_stream_closes_it() {
    use std::io::{BufRead, BufReader};
    let fake = FakeBinance::start(FakeConfig::new(Arc::new(mcbot_stages::SystemClock))).await;
    let dir = workdir();
    let env = binance_env(&fake);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut child = command(dir.path(), &["scheduler", "--mode", "paper", "--log-format", "json"], &env)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, mut logs) = tokio::sync::mpsc::unbounded_channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    wait_for("the scheduler's stream", || fake.ws_connections() == 1).await;
    let close = fake.advance_bar();
    let wanted = format!("bar {close} closed");
    let mut seen = Vec::new();
    let triggered = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(30), logs.recv()).await {
            Ok(Some(line)) if line.contains(&wanted) => break line,
            Ok(Some(line)) => seen.push(line),
            other => panic!("no cycle for {close} ({other:?}): {seen:#?}"),
        }
    };
    assert!(triggered.contains("latency_ms") && triggered.contains("order(s)"), "{triggered}");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));

    let store = open_store(&mcbot::store::SqlStore::embedded_url(&dir.path().join("data"))).await.unwrap();
    let runs = store.recent_runs(Some(TradingCycleJob::NAME), 10).await.unwrap();
    let run = runs.iter().find(|r| r.scheduled_at == close).unwrap_or_else(|| panic!("{runs:?}"));
    assert_eq!(run.status, JobStatus::Succeeded, "{run:?}");
    assert!(fake.orders().is_empty(), "paper never sends an order to the venue");
}

fn clock_now(clock: &ManualClock) -> chrono::DateTime<chrono::Utc> {
    use mcbot_stages::Clock;
    clock.now()
}

/// `mcbot run-once --stage all --mode paper` as a user runs it, with the venue's base URLs from the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_in_paper_mode_against_the_fake_binance() {
    let fake = FakeBinance::start(FakeConfig::new(Arc::new(mcbot_stages::SystemClock))).await;
    let env = binance_env(&fake);
    let doc = paper_run_once(&[], env).await;
    assert_eq!(doc["stages"][0]["status"], "ok", "{doc}");
    assert!(fake.orders().is_empty(), "paper never sends an order to the venue");
}

/// The paper account is read from the store when an order or a balance needs it, not when the bot is assembled:
/// with fills stored and the venue unreachable, `status` and `jobs` still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_jobs_answer_in_paper_mode_while_the_venue_is_down() {
    let fake = FakeBinance::start(FakeConfig::new(Arc::new(mcbot_stages::SystemClock))).await;
    let env = binance_env(&fake);
    let dir = workdir();
    let path = dir.path().to_path_buf();
    let run = move |args: Vec<&'static str>, env: Vec<(&'static str, String)>| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            crate::support::cli::mcbot(&path, &args, &env)
        })
    };
    let out =
        run(vec!["--mode", "paper", "run-once", "--stage", "all", "--output", "json"], env.clone()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let store = open_store(&mcbot::store::SqlStore::embedded_url(&dir.path().join("data"))).await.unwrap();
    let fills = store.fills_between(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC).await.unwrap();
    assert!(!fills.is_empty(), "the paper run filled something");
    store.close().await;

    let down: Vec<(&'static str, String)> = env
        .into_iter()
        .map(|(k, v)| match k {
            "MCBOT_EXCHANGE__BINANCE__REST_URL" => (k, "http://127.0.0.1:9".to_owned()),
            "MCBOT_EXCHANGE__BINANCE__WS_URL" => (k, "ws://127.0.0.1:9".to_owned()),
            _ => (k, v),
        })
        .collect();
    let status = run(vec!["--mode", "paper", "status", "--output", "json"], down.clone()).await.unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let doc = crate::support::cli::json(&status);
    assert_eq!(doc["book"]["mode"], "paper", "{doc}");
    let jobs = run(vec!["--mode", "paper", "jobs"], down).await.unwrap();
    assert!(jobs.status.success(), "{}", String::from_utf8_lossy(&jobs.stderr));
}
