//! Latency from a closed kline on the WebSocket to the start of Analysis, end to end over loopback: the fake
//! Binance (the tests' server) pushes the closed bar of 8 symbols, the real stream client parses it into the
//! candle cache, the bar trigger starts the cycle through the job runtime and ledger (SQLite), RiskCheck and
//! DataCollection run (bars from the cache), and the clock reading at Analysis' start ends the measurement.
//! Baseline: the cron fire at close + `bar_delay_secs` (5 s), which is what the cycle waited for before.

#[allow(dead_code, clippy::all)]
#[path = "../tests/support/fake_binance.rs"]
mod fake_binance;

use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use mcbot::app::{App, open_store};
use mcbot::config::{Config, Mode};
use mcbot::market_stream::MarketStream;
use mcbot::store::SqlStore;
use mcbot_stages::Clock;
use mcbot_stages::domain::{Decimal, Symbol};

use fake_binance::{FakeBinance, FakeConfig, FakeSymbol};

/// What the cycle waited for before the stream trigger: the cron fire 5 s after the close.
const CRON_DELAY_MS: f64 = 5_000.0;

/// Real time from a settable origin: each bar starts at its close and then runs at wall-clock speed, so clock
/// differences inside one cycle are real durations.
struct LiveClock(Mutex<(DateTime<Utc>, Instant)>);

impl LiveClock {
    fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = (t, Instant::now());
    }
}

impl Clock for LiveClock {
    fn now(&self) -> DateTime<Utc> {
        let (t, at) = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        t + chrono::Duration::from_std(at.elapsed()).unwrap_or_default()
    }
}

fn bench_latency(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let start = DateTime::parse_from_rfc3339("2024-03-01T00:00:30Z").expect("date").to_utc();
    let clock = Arc::new(LiveClock(Mutex::new((start, Instant::now()))));
    let coins =
        [("BTC", 40_000), ("ETH", 2_000), ("SOL", 150), ("BNB", 600), ("XRP", 3), ("ADA", 1), ("DOGE", 1), ("LTC", 90)];
    let (fake, app, market) = rt.block_on(async {
        let mut fcfg = FakeConfig::new(clock.clone());
        fcfg.symbols = coins.iter().map(|(b, p)| FakeSymbol::usdt(b, Decimal::from(*p))).collect();
        fcfg.history_bars = 150;
        let fake = FakeBinance::start(fcfg).await;
        let mut cfg = Config { mode: Mode::Paper, ..Config::default() };
        cfg.market.symbols = coins.iter().filter_map(|(b, _)| Symbol::new(&format!("{b}USDT")).ok()).collect();
        cfg.market.timeframe = "1m".parse().expect("1m");
        cfg.exchange.binance = fake.settings();
        // The whole lookback comes from the stream's cache, as in production (default warm-up 500 bars).
        cfg.exchange.binance.stream.warmup_bars = 140;
        cfg.risk.max_daily_loss_pct = 100.into();
        cfg.risk.max_weekly_loss_pct = 100.into();
        cfg.risk.max_drawdown_pct = 100.into();
        cfg.database.data_dir = dir.path().to_path_buf();
        let store = open_store(&SqlStore::embedded_url(dir.path())).await.expect("store");
        let app = App::build(cfg, store, clock.clone()).await.expect("app");
        let market = MarketStream::start(&app).expect("stream");
        for i in 0.. {
            let stats = market.stream().stats();
            if fake.ws_connections() > 0 && stats.bars_backfilled >= 8 * 100 {
                break;
            }
            if i % 50 == 0 {
                eprintln!("waiting for the stream: {} connection(s), {stats:?}", fake.ws_connections());
            }
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
        (fake, app, market)
    });
    let mut cycles = market.cycles();
    let mut from_receipt = Vec::new();
    let mut from_send = Vec::new();
    let mut group = c.benchmark_group("stream");
    group.sample_size(20).measurement_time(StdDuration::from_secs(15));
    group.bench_function("closed_kline_to_analysis_8_symbols", |b| {
        b.iter_custom(|iters| {
            let mut spent = StdDuration::ZERO;
            for _ in 0..iters {
                let close = fake.forming_open() + app.cfg.market.timeframe.duration();
                clock.set(close);
                let sent = clock.now();
                fake.advance_bar();
                let cycle = rt.block_on(async {
                    loop {
                        match tokio::time::timeout(StdDuration::from_secs(30), cycles.recv()).await {
                            Ok(Ok(c)) if c.bar.close == close => break c,
                            Ok(Ok(_)) => continue,
                            other => panic!("no cycle for bar {close}: {other:?}"),
                        }
                    }
                });
                let received = cycle.latency.expect("Analysis ran");
                let analysis = cycle.bar.completed_at + received;
                let total = (analysis - sent).to_std().unwrap_or_default();
                from_receipt.push(received.to_std().unwrap_or_default());
                from_send.push(total);
                spent += total;
            }
            spent
        })
    });
    group.finish();
    let pct = |v: &mut Vec<StdDuration>, p: f64| {
        v.sort();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(i).map_or(0.0, |d| d.as_secs_f64() * 1_000.0)
    };
    let (p50, p99) = (pct(&mut from_send, 0.5), pct(&mut from_send, 0.99));
    let (r50, r99) = (pct(&mut from_receipt, 0.5), pct(&mut from_receipt, 0.99));
    println!(
        "closed kline sent -> Analysis start ({} bars, 8 symbols): p50 {p50:.2} ms, p99 {p99:.2} ms; \
         last kline parsed -> Analysis start: p50 {r50:.2} ms, p99 {r99:.2} ms; \
         cron fallback waits {CRON_DELAY_MS:.0} ms: {:.0}x sooner at p50",
        from_send.len(),
        CRON_DELAY_MS / p50.max(1e-3)
    );
    rt.block_on(market.shutdown());
}

criterion_group!(benches, bench_latency);
criterion_main!(benches);
