//! The admin server's readiness probe over loopback HTTP, on a real SQLite store and virtual time: not ready
//! without stored bars, ready once every symbol's newest bar is within `max_stale_bars` of the last close,
//! not ready again when the data falls behind or trading is halted; `/healthz` answers throughout.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use mcbot::admin::{AdminState, router};
use mcbot::metrics::Exporter;
use mcbot::store::SqlStore;
use mcbot_stages::ManualClock;
use mcbot_stages::domain::{Candle, Decimal, Symbol, Timeframe};
use mcbot_stages::ports::{Store, TradingMode};

use crate::support::db::fresh_sqlite_url;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn bar(open_time: DateTime<Utc>) -> Candle {
    let p = Decimal::from(100);
    Candle { open_time, open: p, high: p, low: p, close: p, volume: Decimal::ONE }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_data_freshness_and_the_trading_state() {
    let db = fresh_sqlite_url();
    let store = Arc::new(SqlStore::open(db.url()).await.unwrap());
    let tf = Timeframe::from_minutes(60).unwrap();
    let clock = Arc::new(ManualClock::new(at("2026-03-01T10:00:10Z")));
    let symbols: Vec<Symbol> = ["BTCUSDT", "ETHUSDT"].iter().map(|s| Symbol::new(s).unwrap()).collect();
    let recorder = mcbot::metrics::recorder().unwrap();
    let state = AdminState {
        exporter: Arc::new(Exporter::new(recorder.handle(), clock.clone())),
        store: store.clone(),
        clock: clock.clone(),
        symbols: symbols.clone(),
        timeframe: tf,
        max_stale_bars: 1,
        control: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        async move {
            let resp = http.get(url).send().await.unwrap();
            let code = resp.status().as_u16();
            (code, resp.text().await.unwrap())
        }
    };
    let ready = || async {
        let (code, body) = get("/readyz").await;
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(code == 200, doc["ready"] == true, "{doc}");
        (code, doc)
    };

    let (code, doc) = ready().await;
    assert_eq!(code, 503, "no stored bar yet: {doc}");
    assert!(doc["checks"]["market_data"].as_str().unwrap().contains("BTCUSDT has no stored bar"), "{doc}");
    assert_eq!(doc["checks"]["database"], "ok");

    // The bar that closed at 10:00 is stored for both symbols: ready.
    for s in &symbols {
        store.save_candles(s, tf, &[bar(at("2026-03-01T09:00:00Z"))]).await.unwrap();
    }
    let (code, doc) = ready().await;
    assert_eq!(code, 200, "{doc}");
    assert_eq!(doc["checks"]["market_data"], "fresh");

    // Two closes later the newest stored bar is two bars behind, one more than allowed.
    clock.set(at("2026-03-01T12:00:10Z"));
    let (code, doc) = ready().await;
    assert_eq!(code, 503, "{doc}");
    assert!(doc["checks"]["market_data"].as_str().unwrap().contains("last bar closed"), "{doc}");
    for s in &symbols {
        store.save_candles(s, tf, &[bar(at("2026-03-01T11:00:00Z"))]).await.unwrap();
    }
    assert_eq!(ready().await.0, 200);

    // Halted: not ready, whatever the data.
    let current = store.load_state_versioned().await.unwrap();
    let mut halted = current.value.clone();
    halted.trading = TradingMode::Halted;
    let mut uow = store.begin().await.unwrap();
    uow.save_state(&halted, current.version).await.unwrap();
    uow.commit().await.unwrap();
    let (code, doc) = ready().await;
    assert_eq!(code, 503, "{doc}");
    assert_eq!(doc["checks"]["trading"], "halted");

    assert_eq!(get("/healthz").await, (200, "ok\n".to_owned()));
    let (code, body) = get("/metrics").await;
    assert_eq!(code, 200);
    assert!(body.contains("# TYPE process_resident_memory_bytes gauge"), "{body}");
    server.abort();
}

/// The job runtime tells its observers (metrics, job monitors) of every run: started, then finished with the
/// ledger's status, duration and cause; a fire that does not run says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_tells_observers_of_every_start_end_and_fire_not_run() {
    use async_trait::async_trait;
    use mcbot_schedules::{
        Job, JobContext, JobError, JobOutcome, RunEnd, RunObserver, RunStart, Runtime, RuntimeConfig, Schedule,
    };
    use mcbot_stages::ports::FailureKind;

    struct Ok_;
    #[async_trait]
    impl Job for Ok_ {
        fn name(&self) -> &str {
            "fine"
        }
        async fn run(&self, _cx: &JobContext) -> Result<JobOutcome, JobError> {
            Ok(JobOutcome::ok("done", serde_json::json!({})))
        }
    }
    struct Fails;
    #[async_trait]
    impl Job for Fails {
        fn name(&self) -> &str {
            "broken"
        }
        async fn run(&self, _cx: &JobContext) -> Result<JobOutcome, JobError> {
            Err(JobError::failed(FailureKind::Exchange, "venue away"))
        }
    }
    #[derive(Default)]
    struct Seen(std::sync::Mutex<Vec<String>>);
    impl RunObserver for Seen {
        fn run_started(&self, run: &RunStart<'_>) {
            self.0.lock().unwrap().push(format!("start {} {}", run.job, run.schedule));
        }
        fn run_finished(&self, run: &RunEnd<'_>) {
            let cause = run.failure.map(|(k, why)| format!(" {k}: {why}")).unwrap_or_default();
            self.0.lock().unwrap().push(format!("end {} {}{cause}", run.job, run.status.as_str()));
        }
        fn fire_not_run(&self, job: &str, reason: &'static str) {
            self.0.lock().unwrap().push(format!("not run {job} {reason}"));
        }
    }

    let db = fresh_sqlite_url();
    let store = Arc::new(SqlStore::open(db.url()).await.unwrap());
    let clock = Arc::new(ManualClock::new(at("2026-03-01T10:00:10Z")));
    let seen = Arc::new(Seen::default());
    let every_minute = "0 * * * * *";
    let jobs: Vec<(Schedule, Arc<dyn Job>)> = vec![
        (Schedule::parse(every_minute).unwrap(), Arc::new(Ok_)),
        (Schedule::parse(every_minute).unwrap(), Arc::new(Fails)),
    ];
    let cfg = RuntimeConfig { grace: Duration::seconds(600), stale_after: Duration::seconds(900) };
    let runtime = Runtime::new(jobs, store, clock, cfg).with_observer(seen.clone());
    let fire = at("2026-03-01T10:00:00Z");
    runtime.fire_named("fine", fire).await.unwrap();
    runtime.fire_named("broken", fire).await.unwrap();
    runtime.fire_named("fine", fire).await.unwrap();
    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "start fine 0 * * * * *",
            "end fine succeeded",
            "start broken 0 * * * * *",
            "end broken failed exchange: exchange: venue away",
            "not run fine already_done",
        ]
    );
}

/// A handler that fails every batch while `down` is set: its cursor stays where it is.
struct Flaky {
    name: &'static str,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl mcbot_schedules::EventHandler for Flaky {
    fn name(&self) -> &str {
        self.name
    }

    async fn handle(&self, _events: &[mcbot_stages::ports::Event]) -> Result<(), String> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) { Err("channel down".into()) } else { Ok(()) }
    }
}

/// `/metrics` reports each consumer's exact lag behind the log, read from the stored cursors at scrape: a stuck
/// consumer shows every event it has not handled (beyond one batch), a healthy one shows zero, and events
/// written after the last pass show at once for both, whichever process runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_consumers_lag_at_scrape_is_exact() {
    use mcbot_stages::Clock;
    use mcbot_stages::ports::{EventKind, NewEvent, Severity};
    use std::sync::atomic::{AtomicBool, Ordering};
    let db = fresh_sqlite_url();
    let store = Arc::new(SqlStore::open(db.url()).await.unwrap());
    let clock = Arc::new(ManualClock::new(at("2026-03-01T10:00:10Z")));
    let state = AdminState {
        exporter: Arc::new(Exporter::new(mcbot::metrics::recorder().unwrap().handle(), clock.clone())),
        store: store.clone(),
        clock: clock.clone(),
        symbols: Vec::new(),
        timeframe: Timeframe::from_minutes(60).unwrap(),
        max_stale_bars: 1,
        control: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    let scrape = || async { reqwest::get(url.clone()).await.unwrap().text().await.unwrap() };
    let sample = |body: &str, series: &str| -> Option<f64> {
        body.lines().find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.parse().ok()))
    };
    let lag = |consumer: &str| format!("mcbot_event_consumer_lag_events{{consumer=\"{consumer}\"}}");

    let append = |n: usize| {
        let events = (0..n).map(|i| NewEvent::new(clock.now(), EventKind::Signal, Severity::Info, format!("e{i}")));
        store.append_events(events.collect())
    };
    append(300).await.unwrap();
    let handlers = [
        Arc::new(Flaky { name: "healthy", down: AtomicBool::new(false) }),
        Arc::new(Flaky { name: "stuck", down: AtomicBool::new(true) }),
    ];
    for h in &handlers {
        let consumer = mcbot_schedules::Consumer::new(store.clone(), clock.clone(), h.clone(), "this".into());
        consumer.pump().await.unwrap();
    }
    let body = scrape().await;
    assert_eq!(sample(&body, &lag("healthy")), Some(0.0), "{body}");
    assert_eq!(sample(&body, &lag("stuck")), Some(300.0), "more than one batch: {body}");
    assert_eq!(sample(&body, "mcbot_event_consumer_cursor{consumer=\"healthy\"}"), Some(300.0), "{body}");

    // Written after the last pass: both are behind by exactly those events until they run again.
    append(7).await.unwrap();
    let body = scrape().await;
    assert_eq!(sample(&body, &lag("healthy")), Some(7.0), "{body}");
    assert_eq!(sample(&body, &lag("stuck")), Some(307.0), "{body}");

    handlers[1].down.store(false, Ordering::SeqCst);
    let consumer = mcbot_schedules::Consumer::new(store.clone(), clock.clone(), handlers[1].clone(), "this".into());
    assert_eq!(consumer.pump().await.unwrap(), mcbot_schedules::Pumped::Handled(307));
    assert_eq!(sample(&scrape().await, &lag("stuck")), Some(0.0));
    server.abort();
}
