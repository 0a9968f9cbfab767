//! A live-path replica in a process of its own, for tests that kill processes for real (SIGKILL) and run several
//! on one database. The parent test starts the fake Binance and a PostgreSQL database, then re-runs this test
//! binary with [`CHILD_TEST`] selected and the `MCBOT_TEST_REPLICA_*` variables set: the child assembles the live
//! path as tests/live_path.rs does (the real Binance adapter, the SQL store, the trading cycle with reconciliation
//! and retries, the job runtime with the operating system's liveness), reconciles at start as `mcbot scheduler`
//! does, and then drives its runtime on the parent's virtual time, read from a file the parent rewrites.
//!
//! Beside the jobs it runs the singletons a scheduler runs, each on its lease: an event-log consumer (leased
//! cursor) that turns every event into an outbox delivery, the delivery worker (worker lease) sending them through
//! a channel that appends to a shared log, and a plain named lease whose every acquisition is logged with its
//! expiry. The parent reads that log to check that a singleton never had two holders at once.

// Shared by the replica and soak tests; not every helper is used by each.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use mcbot::exchange::binance::{BinanceExchange, BinanceSettings, Secret};
use mcbot::notify::DeliveryWorker;
use mcbot::notify::worker::{RetryPolicy, WorkerLease};
use mcbot::store::SqlStore;
use mcbot_schedules::jobs::{ReconcileJob, TradingCycleJob};
use mcbot_schedules::{Consumer, EventHandler, Job, Runtime, RuntimeConfig, Schedule};
use mcbot_stages::Clock;
use mcbot_stages::domain::{Decimal, Symbol, Timeframe};
use mcbot_stages::pipeline::execution::SizingParams;
use mcbot_stages::pipeline::risk::RiskLimits;
use mcbot_stages::pipeline::{Pipeline, PipelineConfig};
use mcbot_stages::ports::{
    Channel, ChannelNotifier, DeliveryStatus, DeliveryStore, Event, Exchange, Message, NewDelivery, NotifyError, Route,
    Store,
};
use mcbot_stages::strategy::registry;

/// The test function a child process runs.
pub const CHILD_TEST: &str = "replica_child::child";
/// Set in a child: the database URL (its presence makes the child test act).
pub const DB_ENV: &str = "MCBOT_TEST_REPLICA_DB";
/// The plain singleton lease whose acquisitions are logged.
pub const SINGLETON_LEASE: &str = "test-singleton";
/// The consumer's cursor name.
pub const AUDIT_CONSUMER: &str = "replica-audit";
/// Bar length of the live path here.
pub const TIMEFRAME: &str = "1m";
/// The reconcile job's schedule: every 5 minutes at second 45.
pub const RECONCILE_CRON: &str = "45 */5 * * * *";

/// Virtual time shared by processes: a file holding an RFC 3339 instant, replaced atomically by the parent.
pub struct FileClock {
    path: PathBuf,
}

impl FileClock {
    /// Reads the time in `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Sets the time (parent side): written beside and renamed over, so a reader never sees half a time.
    pub fn set(path: &Path, t: DateTime<Utc>) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, t.to_rfc3339()).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
}

impl Clock for FileClock {
    fn now(&self) -> DateTime<Utc> {
        for _ in 0..1000 {
            if let Ok(text) = std::fs::read_to_string(&self.path)
                && let Ok(t) = DateTime::parse_from_rfc3339(text.trim())
            {
                return t.to_utc();
            }
            std::thread::sleep(StdDuration::from_millis(1));
        }
        panic!("no time in {}", self.path.display());
    }
}

/// Everything a child needs to know, passed through the environment.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// PostgreSQL URL.
    pub db: String,
    /// The fake's REST base URL.
    pub rest: String,
    /// The fake's WebSocket base URL.
    pub ws: String,
    /// Its API key and secret.
    pub key: String,
    /// Secret.
    pub secret: String,
    /// The virtual clock file.
    pub clock: PathBuf,
    /// Directory of the kill switch file (never created here).
    pub kill_dir: PathBuf,
    /// Shared append-only log of singleton work.
    pub log: PathBuf,
    /// When this file exists the child stops cleanly.
    pub stop: PathBuf,
}

impl ChildSpec {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (DB_ENV, self.db.clone()),
            ("MCBOT_TEST_REPLICA_REST", self.rest.clone()),
            ("MCBOT_TEST_REPLICA_WS", self.ws.clone()),
            ("MCBOT_TEST_REPLICA_KEY", self.key.clone()),
            ("MCBOT_TEST_REPLICA_SECRET", self.secret.clone()),
            ("MCBOT_TEST_REPLICA_CLOCK", self.clock.display().to_string()),
            ("MCBOT_TEST_REPLICA_KILL_DIR", self.kill_dir.display().to_string()),
            ("MCBOT_TEST_REPLICA_LOG", self.log.display().to_string()),
            ("MCBOT_TEST_REPLICA_STOP", self.stop.display().to_string()),
        ]
    }

    fn from_env() -> Option<Self> {
        let v = |k: &str| std::env::var(k).ok();
        Some(Self {
            db: v(DB_ENV)?,
            rest: v("MCBOT_TEST_REPLICA_REST")?,
            ws: v("MCBOT_TEST_REPLICA_WS")?,
            key: v("MCBOT_TEST_REPLICA_KEY")?,
            secret: v("MCBOT_TEST_REPLICA_SECRET")?,
            clock: v("MCBOT_TEST_REPLICA_CLOCK")?.into(),
            kill_dir: v("MCBOT_TEST_REPLICA_KILL_DIR")?.into(),
            log: v("MCBOT_TEST_REPLICA_LOG")?.into(),
            stop: v("MCBOT_TEST_REPLICA_STOP")?.into(),
        })
    }

    /// Starts a child process running the replica (this test binary, [`CHILD_TEST`] only).
    pub fn spawn(&self) -> Replica {
        let exe = std::env::current_exe().unwrap();
        let child = Command::new(exe)
            .args([CHILD_TEST, "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
            .envs(self.env())
            .env("RUST_LOG", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Replica(child)
    }
}

/// A replica process that is killed when its handle goes: a parent test that fails half-way leaves no replica
/// running on after it (reading a clock file its temporary directory no longer holds).
pub struct Replica(Child);

impl std::ops::Deref for Replica {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Replica {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        // Already reaped (stopped or killed by the test): both are no-ops then.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Appends one line to the shared log (one `write` per line, `O_APPEND`: lines of processes never interleave).
fn log_line(path: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// One line of the shared log, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine {
    /// The consumer handled event `id` (as `holder`).
    Handled { holder: String, id: i64 },
    /// The worker sent the delivery of event `event`.
    Sent { holder: String, event: i64 },
    /// `holder` held the singleton lease from `from` until `until` (virtual time, ms).
    Lease { holder: String, from: i64, until: i64 },
}

/// Reads the shared log.
pub fn read_log(path: &Path) -> Vec<LogLine> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let n = |i: usize| f[i].parse::<i64>().unwrap_or_else(|_| panic!("log line {l:?}"));
            match f[0] {
                "handled" => LogLine::Handled { holder: f[1].into(), id: n(2) },
                "sent" => LogLine::Sent { holder: f[1].into(), event: n(2) },
                "lease" => LogLine::Lease { holder: f[1].into(), from: n(2), until: n(3) },
                other => panic!("log line {other:?}"),
            }
        })
        .collect()
}

/// The audit consumer: logs each event it handles and records one delivery per event (idempotent by event id).
struct Audit {
    outbox: Arc<dyn DeliveryStore>,
    log: PathBuf,
    holder: String,
}

#[async_trait]
impl EventHandler for Audit {
    fn name(&self) -> &str {
        AUDIT_CONSUMER
    }

    async fn handle(&self, events: &[Event]) -> Result<(), String> {
        let rows = events
            .iter()
            .map(|e| NewDelivery {
                event_id: e.id,
                occurrence: 0,
                channel: Channel::Log,
                route: Route::Alerts,
                status: DeliveryStatus::Pending,
                fatigue_key: None,
                resolves: false,
                note: None,
                follow_up: None,
                message: Message {
                    kind: e.event.kind,
                    severity: e.event.severity,
                    title: format!("event {}", e.id),
                    body: String::new(),
                    fields: vec![],
                    ts: e.event.ts,
                    image_png: None,
                    charts: Vec::new(),
                },
                created_at: e.event.ts,
            })
            .collect();
        self.outbox.enqueue(rows).await.map_err(|e| e.to_string())?;
        for e in events {
            log_line(&self.log, &format!("handled {} {}", self.holder, e.id));
        }
        Ok(())
    }
}

/// A channel whose every delivery is a log line naming the sender.
struct Recorder {
    log: PathBuf,
    holder: String,
}

#[async_trait]
impl ChannelNotifier for Recorder {
    fn channel(&self) -> Channel {
        Channel::Log
    }

    async fn deliver(&self, _route: Route, m: &Message) -> Result<(), NotifyError> {
        let event: i64 = m.title.trim_start_matches("event ").parse().unwrap_or(-1);
        log_line(&self.log, &format!("sent {} {event}", self.holder));
        Ok(())
    }
}

/// The live path's two symbols.
pub fn symbols() -> Vec<Symbol> {
    vec![Symbol::new("BTCUSDT").unwrap(), Symbol::new("ETHUSDT").unwrap()]
}

/// The name a replica's database connections carry in `pg_stat_activity`.
pub fn replica_app_name(pid: u32) -> String {
    format!("mcbot-replica-{pid}")
}

/// The child: assembles the replica, reconciles, then runs until the stop file appears (or it is killed).
pub async fn child_main() {
    let Some(spec) = ChildSpec::from_env() else { return };
    let holder = format!("{}:{}", mcbot::liveness::host_name(), std::process::id());
    let clock: Arc<dyn Clock> = Arc::new(FileClock::new(spec.clock.clone()));
    let settings = BinanceSettings {
        rest_url: spec.rest.clone(),
        ws_url: spec.ws.clone(),
        api_key: Some(Secret::new(spec.key.clone())),
        api_secret: Some(Secret::new(spec.secret.clone())),
        request_timeout_ms: 1_000,
        order_lookup_delay_ms: 5,
        ..BinanceSettings::default()
    };
    let exchange: Arc<dyn Exchange> = Arc::new(BinanceExchange::new(settings, clock.clone(), None).unwrap());
    let sep = if spec.db.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}application_name={}", spec.db, replica_app_name(std::process::id()));
    let store = Arc::new(SqlStore::open(&url).await.unwrap());
    store.migrate().await.unwrap();
    let dyn_store: Arc<dyn Store> = store.clone();
    let tf: Timeframe = TIMEFRAME.parse().unwrap();
    let params = BTreeMap::from([("lookback".to_owned(), "3".to_owned())]);
    let strategy = registry::build("tsmom", &params, tf).unwrap();
    let pcfg = PipelineConfig {
        symbols: symbols(),
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
            kill_switch_file: spec.kill_dir.join("KILL"),
            ..RiskLimits::default()
        },
        pretrade: Default::default(),
        sizing: SizingParams { rebalance_band_pct: Decimal::new(1, 1), ..SizingParams::default() },
        gate: Default::default(),
    };
    let pipeline = Arc::new(Pipeline::new(pcfg, exchange.clone(), dyn_store.clone(), clock.clone(), strategy));
    let reconcile = Arc::new(ReconcileJob::new(dyn_store.clone(), exchange.clone(), clock.clone(), symbols()));
    let cycle = TradingCycleJob::new(pipeline, dyn_store.clone())
        .with_reconcile(reconcile.clone())
        .with_retries(3, StdDuration::from_millis(1));
    let jobs: Vec<(Schedule, Arc<dyn Job>)> = vec![
        (Schedule::parse(&tf.cron_after_close(5)).unwrap(), Arc::new(cycle)),
        (Schedule::parse(RECONCILE_CRON).unwrap(), reconcile.clone()),
    ];
    let rcfg = RuntimeConfig { grace: Duration::seconds(600), stale_after: Duration::seconds(900) };
    let runtime = Runtime::new(jobs, dyn_store.clone(), clock.clone(), rcfg)
        .with_liveness(Arc::new(mcbot::liveness::OsLiveness::current()));

    // What `mcbot scheduler` does at start: reconcile with the exchange before the schedule resumes.
    let _ = reconcile.reconcile(None).await;
    let outbox: Arc<dyn DeliveryStore> = store.clone();
    let audit = Arc::new(Audit { outbox: outbox.clone(), log: spec.log.clone(), holder: holder.clone() });
    let consumer = Consumer::new(dyn_store.clone(), clock.clone(), audit, holder.clone());
    let recorder: Arc<dyn ChannelNotifier> = Arc::new(Recorder { log: spec.log.clone(), holder: holder.clone() });
    // Virtual time jumps a bar at a time while a process may be descheduled: a lease long against those jumps.
    let lease = WorkerLease { store: store.clone(), holder: holder.clone(), ttl: Duration::minutes(10) };
    // One message per delivery row, so the audit can count each event's delivery: no grouping of similar alerts.
    let rules = mcbot::notify::FollowUpRules { group_window: Duration::zero(), ..Default::default() };
    let worker = DeliveryWorker::new(outbox, clock.clone(), vec![recorder], RetryPolicy::default())
        .with_lease(lease)
        .with_rules(rules);
    let ttl = Duration::seconds(30);
    let mut logged = None;
    loop {
        if spec.stop.exists() {
            break;
        }
        let now = clock.now();
        // Held (taken or renewed) at `now`: logged once per virtual instant, with the expiry it was given.
        if store.try_acquire_lease(SINGLETON_LEASE, &holder, now, ttl).await.unwrap_or(false) && logged != Some(now) {
            logged = Some(now);
            let until = now + ttl;
            log_line(&spec.log, &format!("lease {holder} {} {}", now.timestamp_millis(), until.timestamp_millis()));
        }
        runtime.tick().await;
        runtime.retry_held().await;
        let _ = consumer.pump().await;
        let _ = worker.pass().await;
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    // A clean stop, as the scheduler's: the last events recorded and sent, the leases handed back.
    let _ = consumer.pump().await;
    let _ = worker.pass().await;
    worker.release().await;
    let _ = store.release_lease(SINGLETON_LEASE, &holder).await;
    store.close().await;
}

// ---- the parent side ----

use mcbot_stages::ManualClock;
use mcbot_stages::domain::{OrderStatus, Side};
use mcbot_stages::ports::JobStatus;

use crate::support::db::{PgTestDb, fresh_pg_url};
use crate::support::fake_binance::{Commission, FakeBinance, FakeConfig, FakeTrade};

/// The parent's world: the fake Binance on virtual time, a PostgreSQL database, the shared files.
pub struct Cluster {
    /// The exchange.
    pub fake: FakeBinance,
    /// The parent's side of virtual time (the fake's market clock).
    pub clock: Arc<ManualClock>,
    /// What children are started with.
    pub spec: ChildSpec,
    /// The parent's view of the database.
    pub store: Arc<SqlStore>,
    _dir: tempfile::TempDir,
    // Last: the database outlives the store.
    _db: PgTestDb,
}

impl Cluster {
    /// A fresh database and exchange at 2024-03-01 00:00:30.
    pub async fn start() -> Cluster {
        let start = DateTime::parse_from_rfc3339("2024-03-01T00:00:30Z").unwrap().to_utc();
        let clock = Arc::new(ManualClock::new(start));
        let fake = FakeBinance::start(FakeConfig {
            market_clock: Some(clock.clone()),
            // Fees in the quote asset, so the base balances are exactly the sum of the fills.
            commission: Commission::Quote,
            balances: vec![("USDT".into(), Decimal::from(10_000))],
            ..FakeConfig::new(clock.clone())
        })
        .await;
        let db = fresh_pg_url().await;
        let store = Arc::new(SqlStore::open(db.url()).await.unwrap());
        store.migrate().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let settings = fake.settings();
        let spec = ChildSpec {
            db: db.url().to_owned(),
            rest: fake.rest_url.clone(),
            ws: fake.ws_url.clone(),
            key: settings.api_key.as_ref().unwrap().expose().to_owned(),
            secret: settings.api_secret.as_ref().unwrap().expose().to_owned(),
            clock: dir.path().join("clock"),
            kill_dir: dir.path().to_owned(),
            log: dir.path().join("singletons.log"),
            stop: dir.path().join("STOP"),
        };
        FileClock::set(&spec.clock, start);
        Cluster { fake, clock, spec, store, _dir: dir, _db: db }
    }

    /// Moves virtual time (the fake's and the children's).
    pub fn set_time(&self, t: DateTime<Utc>) {
        self.clock.set(t);
        FileClock::set(&self.spec.clock, t);
    }

    /// Closes a bar at the exchange and moves time to 5 s after its close, when the cycle fires; returns the
    /// close (the cycle's ledger key).
    pub fn close_bar(&self) -> DateTime<Utc> {
        let open = self.fake.advance_bar();
        self.set_time(open + Duration::seconds(5));
        open
    }

    /// The ledger row of `job` for `key`, if there is one.
    pub async fn run(&self, job: &str, key: DateTime<Utc>) -> Option<mcbot_stages::ports::JobRunRecord> {
        let runs = self.store.recent_runs(Some(job), 20).await.unwrap();
        runs.into_iter().find(|r| r.scheduled_at == key)
    }

    /// Waits (real time, at most `limit`) until `job`'s run for `key` has ended; returns its row.
    pub async fn wait_done(
        &self,
        job: &str,
        key: DateTime<Utc>,
        limit: StdDuration,
    ) -> mcbot_stages::ports::JobRunRecord {
        let started = std::time::Instant::now();
        loop {
            if let Some(r) = self.run(job, key).await
                && r.status != JobStatus::Running
            {
                return r;
            }
            assert!(
                started.elapsed() < limit,
                "{job} for {key} did not finish within {limit:?}: {:?}",
                self.run(job, key).await
            );
            tokio::time::sleep(StdDuration::from_millis(2)).await;
        }
    }

    /// Tells every child to stop and waits for them.
    pub fn stop(&self, children: Vec<Replica>) {
        std::fs::write(&self.spec.stop, b"").unwrap();
        for mut c in children {
            let status = c.wait().unwrap();
            assert!(status.success(), "a child ended with {status}");
        }
        std::fs::remove_file(&self.spec.stop).unwrap();
    }

    /// Waits until none of replica `pid`'s database connections runs a statement, at two looks 50 ms apart. With
    /// the replica stopped (SIGSTOP) what the database shows of it is then final: a statement it sent before it
    /// stopped, a COMMIT say, is carried out by the server whatever the client does, so a look taken earlier can
    /// see a run still held that the server is about to finish.
    pub async fn settled(&self, pid: u32) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.spec.db).await.unwrap();
        let count = "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity \
                     WHERE application_name = $1";
        let name = replica_app_name(pid);
        let started = std::time::Instant::now();
        let mut quiet = 0;
        while quiet < 2 {
            let (all, active): (i64, i64) = sqlx::query_as(count).bind(&name).fetch_one(&mut conn).await.unwrap();
            assert!(all > 0, "replica {pid} has no connection named {name}");
            assert!(started.elapsed() < StdDuration::from_secs(30), "replica {pid} never settled");
            quiet = if active == 0 { quiet + 1 } else { 0 };
            tokio::time::sleep(StdDuration::from_millis(50)).await;
        }
        let _ = conn.close().await;
    }

    /// A reconciliation from the parent, as the next start would run it.
    pub async fn reconcile(&self) -> mcbot_schedules::jobs::ReconcileReport {
        let exchange: Arc<dyn Exchange> =
            Arc::new(BinanceExchange::new(self.fake.settings(), self.clock.clone(), None).unwrap());
        let job = ReconcileJob::new(self.store.clone(), exchange, self.clock.clone(), symbols());
        job.reconcile(None).await.unwrap()
    }
}

/// Sends `signal` (a name `kill` knows: STOP, CONT, TERM) to a child.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill").args([format!("-{signal}"), child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -{signal} {}", child.id());
}

/// Sends SIGKILL (no clean-up of any kind happens in the child) and reaps it.
pub fn kill9(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The books against the exchange after a final reconciliation: zero duplicate orders at the exchange, zero lost
/// fills (every trade stored once, as executed, and nothing else), every stored order final, positions equal to
/// the exchange's balances, and one ledger row per trading-cycle bar, none left running. Returns (orders, trades).
pub async fn books_match_the_exchange(c: &Cluster, bars: &[DateTime<Utc>]) -> (usize, usize) {
    // past the grace period an order the exchange still does not know is one it never saw
    c.set_time(c.clock.now() + Duration::minutes(3));
    let report = c.reconcile().await;
    let store = &c.store;
    let orders = c.fake.orders();
    let mut by_client_id: BTreeMap<&str, usize> = BTreeMap::new();
    for o in &orders {
        *by_client_id.entry(o.client_order_id.as_str()).or_default() += 1;
    }
    let duplicates: Vec<_> = by_client_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "zero duplicate orders at the exchange: {duplicates:?}");

    let fills = store.fills_between(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC).await.unwrap();
    let stored: BTreeMap<(String, String), _> =
        fills.iter().map(|f| ((f.symbol.to_string(), f.trade_id.clone()), f)).collect();
    assert_eq!(stored.len(), fills.len(), "a trade is stored once");
    let trades = c.fake.trades();
    let lost: Vec<&FakeTrade> =
        trades.iter().filter(|t| !stored.contains_key(&(t.symbol.clone(), t.id.to_string()))).collect();
    assert!(lost.is_empty(), "zero lost fills: {} of {} trades not stored: {lost:?}", lost.len(), trades.len());
    let client_id_of: BTreeMap<i64, &str> = orders.iter().map(|o| (o.order_id, o.client_order_id.as_str())).collect();
    for t in &trades {
        let f = stored[&(t.symbol.clone(), t.id.to_string())];
        assert_eq!(f.client_order_id.as_str(), client_id_of[&t.order_id], "trade {} booked to its order", t.id);
        assert_eq!((f.qty, f.price, f.fee), (t.qty, t.price, t.commission), "trade {} booked as executed", t.id);
        assert_eq!(f.side == Side::Buy, t.is_buyer, "trade {} side", t.id);
    }
    assert_eq!(fills.len(), trades.len(), "no fill the exchange did not execute");
    for o in &orders {
        let s = store
            .order(&mcbot_stages::domain::ClientOrderId::from_stored(o.client_order_id.clone()))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("order {} at the exchange is not stored", o.client_order_id));
        assert_eq!(s.filled_qty, o.executed_qty, "{}: stored fill quantity", o.client_order_id);
        assert!(s.status.is_final(), "{}: {:?}", o.client_order_id, s.status);
    }

    let runs = store.recent_runs(Some(TradingCycleJob::NAME), 100_000).await.unwrap();
    let mut per_bar: BTreeMap<DateTime<Utc>, Vec<&mcbot_stages::ports::JobRunRecord>> = BTreeMap::new();
    for r in &runs {
        per_bar.entry(r.scheduled_at).or_default().push(r);
    }
    for bar in bars {
        let rows = per_bar.get(bar).unwrap_or_else(|| panic!("bar {bar} has no trading cycle in the ledger"));
        assert_eq!(rows.len(), 1, "bar {bar}: one ledger row: {rows:?}");
    }
    let running: Vec<_> = runs.iter().filter(|r| r.status == JobStatus::Running).collect();
    assert!(running.is_empty(), "no run left running: {running:?}");
    let at_exchange: BTreeMap<&str, &crate::support::fake_binance::FakeOrder> =
        orders.iter().map(|o| (o.client_order_id.as_str(), o)).collect();
    for r in &runs {
        // One decision per symbol and bar: a run that was killed and taken over re-sends under the same ids, so
        // the exchange never holds two orders of one run for one symbol.
        let mut per_symbol: BTreeMap<String, usize> = BTreeMap::new();
        for s in store.orders_of_run(&r.run_id).await.unwrap() {
            if at_exchange.contains_key(s.client_order_id.as_str()) {
                *per_symbol.entry(s.symbol.to_string()).or_default() += 1;
            }
        }
        assert!(
            per_symbol.values().all(|n| *n == 1),
            "run {}: orders at the exchange per symbol {per_symbol:?}",
            r.run_id
        );
        for s in store.orders_of_run(&r.run_id).await.unwrap() {
            if !by_client_id.contains_key(s.client_order_id.as_str()) {
                assert!(
                    matches!(s.status, OrderStatus::Canceled | OrderStatus::Rejected) && s.filled_qty.is_zero(),
                    "an order the exchange never saw is closed unfilled: {s:?}"
                );
            }
        }
    }

    assert!(report.is_clean(), "reconciliation is clean: {report:?}");
    assert!(store.open_orders().await.unwrap().is_empty(), "no order stuck open in the store");
    let balances = c.fake.balances();
    let positions: BTreeMap<String, Decimal> =
        store.positions().await.unwrap().into_iter().map(|p| (p.symbol.to_string(), p.qty)).collect();
    for (symbol, base) in [("BTCUSDT", "BTC"), ("ETHUSDT", "ETH")] {
        let held = balances.get(base).copied().unwrap_or_default();
        let pos = positions.get(symbol).copied().unwrap_or_default();
        assert_eq!(pos, held, "{symbol}: the stored position equals the exchange's {base} balance");
    }
    (orders.len(), trades.len())
}
