//! Reports: a daily report with its five charts over a store holding one year of hourly equity snapshots and
//! 5 000 round trips (10 000 fills) on three symbols with hourly candles, target under 300 ms; the monthly report
//! with its charts over the same store, target under 1 s. Both read everything from the SQLite store, as the
//! report job does.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use mcbot::store::SqlStore;
use mcbot_schedules::reports::{Period, ReportSettings, build_report};
use mcbot_stages::domain::{Candle, ClientOrderId, Decimal, Fill, Order, OrderStatus, Side, Symbol, Timeframe};
use mcbot_stages::ports::{EquitySnapshot, SignalRecord, Store};

const HOURS: i64 = 365 * 24;
const TRIPS: i64 = 5000;

fn sym(s: &str) -> Symbol {
    Symbol::new(s).expect("symbol")
}

/// One year of data: hourly candles of BTC, ETH and SOL, 5 000 round trips spread over the year (a buy and a sell
/// a few hours apart, rotating through the symbols), hourly equity.
async fn fill_store(store: &SqlStore, t0: DateTime<Utc>) {
    let tf = Timeframe::from_minutes(60).expect("1h");
    let hour = chrono::Duration::hours(1);
    let bases = [("BTCUSDT", 90_000i64), ("ETHUSDT", 3_000), ("SOLUSDT", 150)];
    let price = |base: i64, h: i64| Decimal::new(base * 100 + (h * 37 % 1000) - 500 + (h % 24) * 10, 2);
    for (s, base) in bases {
        let candles: Vec<Candle> = (0..HOURS)
            .map(|h| {
                let c = price(base, h);
                Candle { open_time: t0 + hour * h as i32, open: c, high: c, low: c, close: c, volume: Decimal::ONE }
            })
            .collect();
        store.save_candles(&sym(s), tf, &candles).await.expect("candles");
    }
    let mut uow = store.begin().await.expect("begin");
    for i in 0..TRIPS {
        let (s, base) = bases[(i % 3) as usize];
        let open = i * (HOURS - 2) / TRIPS;
        for (leg, side, h) in [(0, Side::Buy, open), (1, Side::Sell, open + 1)] {
            let ts = t0 + hour * (h + 1) as i32 + chrono::Duration::seconds(5);
            let run = format!("trading-cycle@{}", ts.timestamp());
            let id = ClientOrderId::from_stored(format!("c-{i}-{leg}"));
            let qty = Decimal::new(1, 3);
            let p = price(base, h);
            uow.insert_order(&Order {
                client_order_id: id.clone(),
                run_id: run.clone(),
                symbol: sym(s),
                side,
                qty,
                filled_qty: qty,
                avg_price: Some(p),
                status: OrderStatus::Filled,
                exchange_order_id: None,
                created_at: ts,
                reason: "bench".into(),
            })
            .await
            .expect("order");
            uow.insert_fill(&Fill {
                trade_id: format!("t-{i}-{leg}"),
                client_order_id: id,
                symbol: sym(s),
                side,
                qty,
                price: p,
                fee: (qty * p * Decimal::new(1, 3)).round_dp(8),
                ts,
            })
            .await
            .expect("fill");
            uow.insert_signal(&SignalRecord {
                run_id: run,
                ts,
                symbol: sym(s),
                strategy: if i % 2 == 0 { "tsmom".into() } else { "breakout".into() },
                target_weight: Decimal::ONE,
                reason: "bench".into(),
            })
            .await
            .expect("signal");
        }
    }
    for h in 0..HOURS {
        let e = Decimal::new(1_000_000 + (h * 7919 % 20_000) - 10_000, 2);
        uow.insert_equity(&EquitySnapshot { ts: t0 + hour * (h + 1) as i32, equity: e, cash: e / Decimal::TWO })
            .await
            .expect("equity");
    }
    uow.commit().await.expect("commit");
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let store = rt.block_on(SqlStore::open(&SqlStore::embedded_url(dir.path()))).expect("store");
    let t0 = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").expect("t0").to_utc();
    rt.block_on(fill_store(&store, t0));
    let settings = ReportSettings {
        timeframe: Timeframe::from_minutes(60).expect("1h"),
        quote: "USDT".into(),
        benchmarks: vec![sym("BTCUSDT"), sym("ETHUSDT")],
        max_drawdown_pct: Decimal::from(20),
        unattributed: "unattributed".into(),
    };
    let cases = [
        ("report_daily_with_charts", Period::Daily, "2025-12-30T00:00:00Z", 0.3),
        ("report_monthly_with_charts", Period::Monthly, "2025-12-01T00:00:00Z", 1.0),
    ];
    for (name, period, start, target) in cases {
        let start = DateTime::parse_from_rfc3339(start).expect("start").to_utc();
        let end = period.next_start(start);
        let mut spent = Vec::new();
        c.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    let r = rt.block_on(build_report(&store, &settings, period, start, end)).expect("report");
                    let charts = mcbot::reports::charts::all(&r);
                    let names: Vec<&str> = charts.iter().map(|c| c.name.as_str()).collect();
                    assert_eq!(charts.len(), 5, "{names:?}");
                }
                let d = t.elapsed();
                spent.push(d / u32::try_from(iters.max(1)).unwrap_or(1));
                d
            })
        });
        spent.sort();
        // where the time goes: the figures from the store, then the charts
        let t = Instant::now();
        let r = rt.block_on(build_report(&store, &settings, period, start, end)).expect("report");
        let figures = t.elapsed();
        let t = Instant::now();
        let _charts = mcbot::reports::charts::all(&r);
        let charts = t.elapsed();
        if let Some(median) = spent.get(spent.len() / 2) {
            println!(
                "{name} (1 year hourly, 5000 trades): median {median:?} (figures {figures:?}, charts {charts:?}); \
                 target {target} s; ratio {:.2}x",
                median.as_secs_f64() / target
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
