//! One full trading cycle (RiskCheck, DataCollection, Analysis, Execution) for 8 symbols on the simulated
//! exchange and the embedded SQLite store, each iteration a new bar. Target: under 20 ms per cycle.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration};
use criterion::{Criterion, criterion_group, criterion_main};
use mcbot::app::{App, open_store};
use mcbot::config::Config;
use mcbot::store::SqlStore;
use mcbot_stages::ManualClock;
use mcbot_stages::domain::RunId;
use mcbot_stages::pipeline::StageSelection;

const TARGET_MS: f64 = 20.0;

fn bench_cycle(c: &mut Criterion) {
    run_bench(c, false);
    run_bench(c, true);
}

/// With `metrics` on, the Prometheus recorder is installed and the metrics consumer handles each cycle's events
/// right after it (in production it runs beside the cycle, off its path): the difference between the two runs
/// is the most the instrumentation can add to a cycle.
fn run_bench(c: &mut Criterion, metrics: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
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
    let consumer = metrics.then(|| {
        let _ = mcbot::metrics::install();
        mcbot::metrics::register_static(&app.cfg, &app.runtime.schedules());
        let handler = Arc::new(mcbot::metrics::consumer::EventMetrics::new("metrics", None));
        mcbot_schedules::Consumer::new(app.store.clone(), app.clock.clone(), handler, "bench".into())
    });
    if let Some(consumer) = &consumer {
        // The events written while the app was assembled are not part of any cycle.
        rt.block_on(consumer.pump()).expect("pump");
    }
    let name = if metrics { "cycle_8_symbols_sim_sqlite_metrics_on" } else { "cycle_8_symbols_sim_sqlite" };
    let mut bar = 200i64;
    let mut total = StdDuration::ZERO;
    let mut cycles = 0u32;
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut spent = StdDuration::ZERO;
            for _ in 0..iters {
                bar += 1;
                let close = start + Duration::hours(bar);
                clock.set(close + Duration::seconds(5));
                let run = RunId::new("trading-cycle", close);
                let t = Instant::now();
                let report =
                    rt.block_on(app.pipeline.run_cycle(&run, close, StageSelection::All, None)).expect("cycle");
                if let Some(consumer) = &consumer {
                    rt.block_on(consumer.pump()).expect("pump");
                }
                spent += t.elapsed();
                assert!(!report.failed(), "cycle failed: {:?}", report.stages);
            }
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

criterion_group!(benches, bench_cycle);
criterion_main!(benches);
