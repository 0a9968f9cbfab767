//! Serving `/metrics` with 8 symbols: every per-symbol and per-job series populated as after a day of trading
//! (orders, fills with slippage, positions, bar ages), rendered by the exporter with the process section, and
//! the same over loopback HTTP through the admin server. Target: under 5 ms per scrape.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use mcbot::app::{App, open_store};
use mcbot::config::Config;
use mcbot::metrics::consumer::EventMetrics;
use mcbot::metrics::{self, Exporter};
use mcbot::store::SqlStore;
use mcbot_stages::ManualClock;
use mcbot_stages::domain::Symbol;
use mcbot_stages::ports::{Event, EventKind, NewEvent, Severity, Store};
use serde_json::json;

const TARGET_MS: f64 = 5.0;
const SYMBOLS: [&str; 8] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "LTCUSDT"];

/// A day of events for every symbol: a placed order, its acknowledgement, a fill and a position change per hour.
fn day_of_events(start: DateTime<Utc>) -> Vec<Event> {
    let mut out = Vec::new();
    let mut id = 0;
    for hour in 0..24 {
        for (i, s) in SYMBOLS.iter().enumerate() {
            let Ok(symbol) = Symbol::new(s) else { continue };
            let t = start + Duration::hours(hour);
            let cid = format!("{s}-{hour}");
            let side = if hour % 2 == 0 { "buy" } else { "sell" };
            let price = format!("{}", 100 + i);
            let fill = format!("{}.{}", 100 + i, hour % 7);
            for (kind, payload) in [
                (EventKind::OrderPlaced, json!({"client_order_id": cid, "side": side, "ref_price": price})),
                (EventKind::OrderAcknowledged, json!({"client_order_id": cid, "side": side, "status": "filled"})),
                (
                    EventKind::OrderFilled,
                    json!({"client_order_id": cid, "side": side, "qty": "1", "price": fill, "fee": "0.1"}),
                ),
                (EventKind::PositionChanged, json!({"realized_pnl": "1"})),
            ] {
                id += 1;
                let e = NewEvent::new(t, kind, Severity::Info, "bench").symbol(&symbol).payload(payload);
                out.push(Event { id, event: e });
            }
        }
    }
    out
}

fn bench_metrics(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let start = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").expect("date").to_utc();
    let mut cfg = Config::default();
    cfg.market.symbols = SYMBOLS.iter().filter_map(|s| Symbol::new(s).ok()).collect();
    cfg.database.data_dir = dir.path().to_path_buf();
    cfg.http.listen = "127.0.0.1:0".into();
    let clock = Arc::new(ManualClock::new(start + Duration::hours(25)));
    let handle = metrics::install().expect("recorder");
    let (app, exporter) = rt.block_on(async {
        let store = open_store(&SqlStore::embedded_url(dir.path())).await.expect("store");
        let app = App::build(cfg, store, clock.clone()).await.expect("app");
        metrics::register_static(&app.cfg, &app.runtime.schedules());
        // A cycle per symbol's bar, so bars and positions are stored.
        let close = app.cfg.market.timeframe.last_close(start + Duration::hours(25));
        let run = mcbot_stages::domain::RunId::new("trading-cycle", close);
        let _ = app.pipeline.run_cycle(&run, close, mcbot_stages::pipeline::StageSelection::All, None).await;
        let exporter = Arc::new(Exporter::new(handle, clock.clone()));
        let src = metrics::state::StateSource {
            symbols: app.cfg.market.symbols.clone(),
            timeframe: app.cfg.market.timeframe,
            strategy: app.cfg.strategy.name.clone(),
        };
        let store: &dyn Store = app.store.as_ref();
        metrics::state::refresh(store, clock.as_ref(), &src, &exporter).await.expect("state");
        (app, exporter)
    });
    EventMetrics::new("bench", None).record(&day_of_events(start));
    let body = exporter.render();
    let series = body.lines().filter(|l| !l.starts_with('#')).count();
    println!("/metrics: {} bytes, {series} samples", body.len());

    let report = |name: &str, total: StdDuration, n: u32| {
        if n > 0 {
            let ms = total.as_secs_f64() * 1000.0 / f64::from(n);
            println!("{name}: {ms:.3} ms per scrape (target {TARGET_MS} ms)");
        }
    };
    let (mut total, mut n) = (StdDuration::ZERO, 0u32);
    c.bench_function("metrics_render_8_symbols", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(exporter.render());
            }
            let spent = t.elapsed();
            total += spent;
            n += u32::try_from(iters).unwrap_or(u32::MAX);
            spent
        })
    });
    report("render", total, n);

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let monitoring = rt.block_on(mcbot::admin::Monitoring::start(&app, stop)).expect("admin server");
    let url = format!("http://{}/metrics", monitoring.addr().expect("listening"));
    let http = reqwest::Client::new();
    let (mut total, mut n) = (StdDuration::ZERO, 0u32);
    c.bench_function("metrics_http_get_8_symbols", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let text = rt.block_on(async { http.get(&url).send().await.expect("get").text().await.expect("body") });
                std::hint::black_box(text);
            }
            let spent = t.elapsed();
            total += spent;
            n += u32::try_from(iters).unwrap_or(u32::MAX);
            spent
        })
    });
    report("loopback HTTP GET", total, n);
    stop_tx.send_replace(true);
    rt.block_on(monitoring.finish());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(StdDuration::from_secs(5));
    targets = bench_metrics
}
criterion_main!(benches);
