//! One full trading cycle (RiskCheck, DataCollection, Analysis, Execution) for 8 symbols on the simulated
//! exchange and the embedded SQLite store, each iteration a new bar. Target: under 20 ms per cycle.
//!
//! Then the cost of the instrumentation: the same cycle with the Prometheus recorder installed and the metrics
//! consumer handling each cycle's events right after it, inside the timed span (in production it runs beside
//! the cycle, off its path, so this is the most the instrumentation can add). As in service, the consumer's
//! lease is kept fresh by its poll between bars (an untimed pass before each cycle), so the timed pass takes
//! the events its process committed and advances its cursor. On a shared machine two runs one
//! after the other, or two bots side by side, differ by more than the cost itself, so the overhead is measured
//! on one bot: every cycle is timed, then its consumer pass, and the medians compared. Nothing on the cycle's
//! own path records a metric today (the pipeline writes events; the metrics come from the consumer); a metric
//! recorded inline would show in the cycle's time, against the bot without a recorder. Target: under 5 %.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use mcbot::app::{App, open_store};
use mcbot::config::Config;
use mcbot::store::SqlStore;
use mcbot_schedules::Consumer;
use mcbot_stages::ManualClock;
use mcbot_stages::domain::RunId;
use mcbot_stages::pipeline::StageSelection;
use tokio::runtime::Runtime;

const TARGET_MS: f64 = 20.0;
const OVERHEAD_TARGET: f64 = 0.05;
/// Cycles measured for the overhead (`MCBOT_BENCH_CYCLES` overrides).
const CYCLES: usize = 400;

/// One bot: its own store, clock and bar counter, with or without the metrics consumer.
struct Rig {
    app: App,
    clock: Arc<ManualClock>,
    start: DateTime<Utc>,
    bar: i64,
    consumer: Option<Consumer>,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new(rt: &Runtime) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let start = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").expect("date").to_utc();
        let mut cfg = Config::default(); // 8 symbols are configured in default.toml; use them here too
        cfg.market.symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "LTCUSDT"]
            .iter()
            .filter_map(|s| mcbot_stages::domain::Symbol::new(s).ok())
            .collect();
        cfg.sim.start = start;
        cfg.sim.bar_vol = 0.02;
        cfg.risk.max_daily_loss_pct = 100.into();
        cfg.risk.max_weekly_loss_pct = 100.into();
        cfg.risk.max_drawdown_pct = 100.into();
        cfg.database.data_dir = dir.path().to_path_buf();
        let clock = Arc::new(ManualClock::new(start + Duration::hours(200)));
        let app = rt.block_on(async {
            let store = open_store(&SqlStore::embedded_url(dir.path())).await.expect("store");
            App::build(cfg, store, clock.clone()).await.expect("app")
        });
        Self { app, clock, start, bar: 200, consumer: None, _dir: dir }
    }

    /// Installs the recorder (once per process) and gives this bot the metrics consumer, caught up with the
    /// events written while the app was assembled (they are not part of any cycle).
    fn instrument(&mut self, rt: &Runtime) {
        let _ = mcbot::metrics::install();
        mcbot::metrics::register_static(&self.app.cfg, &self.app.runtime.schedules());
        let handler = Arc::new(mcbot::metrics::consumer::EventMetrics::new("metrics", None));
        let consumer = Consumer::new(self.app.store.clone(), self.app.clock.clone(), handler, "bench".into());
        rt.block_on(consumer.pump()).expect("pump");
        self.consumer = Some(consumer);
    }

    /// Runs the next bar's cycle, then the consumer's pass when instrumented; returns the time each took.
    fn cycle_and_pass(&mut self, rt: &Runtime) -> (StdDuration, StdDuration) {
        self.bar += 1;
        let close = self.start + Duration::hours(self.bar);
        self.clock.set(close + Duration::seconds(5));
        let run = RunId::new("trading-cycle", close);
        // In service the consumer's poll (every 5 s) keeps its lease fresh between bars, so the pass after a
        // cycle finds it young; here virtual time jumps a bar at once, and this untimed pass is that poll.
        if let Some(consumer) = &self.consumer {
            rt.block_on(consumer.pump()).expect("poll");
        }
        let t = Instant::now();
        let report = rt.block_on(self.app.pipeline.run_cycle(&run, close, StageSelection::All, None)).expect("cycle");
        let cycle = t.elapsed();
        let t = Instant::now();
        if let Some(consumer) = &self.consumer {
            rt.block_on(consumer.pump()).expect("pump");
        }
        let pass = if self.consumer.is_some() { t.elapsed() } else { StdDuration::ZERO };
        assert!(!report.failed(), "cycle failed: {:?}", report.stages);
        (cycle, pass)
    }

    /// The cycle and its consumer pass together.
    fn cycle(&mut self, rt: &Runtime) -> StdDuration {
        let (cycle, pass) = self.cycle_and_pass(rt);
        cycle + pass
    }
}

fn criterion_run(c: &mut Criterion, rt: &Runtime, rig: &mut Rig, name: &str) {
    let (mut total, mut cycles) = (StdDuration::ZERO, 0u32);
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let spent: StdDuration = (0..iters).map(|_| rig.cycle(rt)).sum();
            total += spent;
            cycles += u32::try_from(iters).unwrap_or(u32::MAX);
            spent
        })
    });
    if cycles > 0 {
        let ms = total.as_secs_f64() * 1000.0 / f64::from(cycles);
        println!(
            "{name}: mean cycle {ms:.3} ms over {cycles} cycles; target {TARGET_MS} ms; ratio target/actual = {:.1}x",
            TARGET_MS / ms
        );
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn bench_cycle(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut plain = Rig::new(&rt);
    let mut instrumented = Rig::new(&rt);
    // Without a recorder installed: the cycle as it was before any instrumentation.
    criterion_run(c, &rt, &mut plain, "cycle_8_symbols_sim_sqlite");
    instrumented.instrument(&rt);
    criterion_run(c, &rt, &mut instrumented, "cycle_8_symbols_sim_sqlite_metrics_on");

    // The overhead, on the instrumented bot alone: each cycle's own time against its consumer pass.
    let n = std::env::var("MCBOT_BENCH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(CYCLES);
    drop(plain);
    let (mut cycles, mut passes) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let (cycle, pass) = instrumented.cycle_and_pass(&rt);
        cycles.push(cycle.as_secs_f64() * 1000.0);
        passes.push(pass.as_secs_f64() * 1000.0);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (cycle_mean, pass_mean) = (mean(&cycles), mean(&passes));
    let (cycle_ms, pass_ms) = (median(&mut cycles), median(&mut passes));
    let overhead = pass_ms / cycle_ms;
    println!(
        "instrumentation overhead: {:.1} % of the cycle (median consumer pass {pass_ms:.3} ms against a median cycle \
         {cycle_ms:.3} ms over {n} cycles; means {pass_mean:.3} / {cycle_mean:.3} ms = {:.1} %); target {:.0} %; \
         ratio target/actual = {:.1}x",
        overhead * 100.0,
        pass_mean / cycle_mean * 100.0,
        OVERHEAD_TARGET * 100.0,
        OVERHEAD_TARGET / overhead.max(f64::EPSILON)
    );
}

criterion_group!(benches, bench_cycle);
criterion_main!(benches);
