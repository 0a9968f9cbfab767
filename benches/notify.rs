//! Notifications. (1) Recording a cycle's deliveries: the notification consumer handles one trading cycle's
//! events (8 fills, 8 position changes, 8 signals, a finish and a warning) into the SQLite outbox — work done off
//! the trading path, after the cycle committed; target under 1 ms. (2) From a fill event in the log to the message
//! arriving at a loopback Bot API (consumer pump + worker send over HTTP), channel healthy; target p99 under 500 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use mcbot::config::{NotifyConfig, TelegramConfig};
use mcbot::notify::{DeliveryWorker, NotificationConsumer, setup};
use mcbot::store::SqlStore;
use mcbot_schedules::Consumer;
use mcbot_stages::SystemClock;
use mcbot_stages::domain::Symbol;
use mcbot_stages::ports::{DeliveryStore, Event, EventKind, NewEvent, Severity, Store};

const TOKEN: &str = "1:bench";

fn cycle(n: i64) -> Vec<Event> {
    let ts = Utc::now();
    let sym = Symbol::new("BTCUSDT").ok();
    let mut out = Vec::new();
    let mut push = |kind, sev, payload: serde_json::Value| {
        let mut e =
            NewEvent::new(ts, kind, sev, format!("{kind} {n}")).run(format!("trading-cycle@{n}")).payload(payload);
        e.symbol = sym.clone();
        out.push(Event { id: n * 100 + i64::try_from(out.len()).unwrap_or(0), event: e });
    };
    for _ in 0..8 {
        push(EventKind::Signal, Severity::Info, serde_json::json!({}));
        push(
            EventKind::OrderFilled,
            Severity::Info,
            serde_json::json!({"side": "buy", "qty": "0.01", "price": "65000", "fee": "0.65"}),
        );
        push(EventKind::PositionChanged, Severity::Info, serde_json::json!({"realized_pnl": "0"}));
    }
    push(EventKind::CycleFinished, Severity::Info, serde_json::json!({}));
    push(EventKind::StaleData, Severity::Warning, serde_json::json!({}));
    out
}

async fn fake_bot_api() -> String {
    let app = axum::Router::new().fallback(|| async {
        axum::Json(serde_json::json!({"ok": true, "result": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "text": "x"}}))
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    url
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let store = rt.block_on(SqlStore::open(&SqlStore::embedded_url(dir.path()))).expect("store");
    let url = rt.block_on(fake_bot_api());
    let cfg = NotifyConfig {
        telegram: Some(TelegramConfig { token: Some(TOKEN.into()), chat_ids: vec![1], api_url: url }),
        ..Default::default()
    };
    let outbox: Arc<dyn DeliveryStore> = Arc::new(store.clone());
    let state: Arc<dyn Store> = Arc::new(store.clone());
    let consumer = NotificationConsumer::new(
        "bench",
        outbox.clone(),
        None,
        setup::routing(&cfg),
        setup::channel_rules(&cfg),
        setup::fatigue(&cfg),
    );
    let mut n = 0;
    let mut spent = Vec::new();
    c.bench_function("notify_record_cycle", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                n += 1;
                rt.block_on(consumer.record(&cycle(n))).expect("record");
            }
            let d = t.elapsed();
            spent.push(d / u32::try_from(iters.max(1)).unwrap_or(1));
            d
        })
    });
    spent.sort();
    if let Some(median) = spent.get(spent.len() / 2) {
        println!(
            "record a cycle's deliveries: median {median:?}; target 1 ms; ratio {:.2}x",
            median.as_secs_f64() / 0.001
        );
    }

    // Fill event in the log -> message at the Bot API.
    let clock = Arc::new(SystemClock);
    let handler = NotificationConsumer::new(
        "latency",
        outbox.clone(),
        None,
        setup::routing(&cfg),
        setup::channel_rules(&cfg),
        setup::fatigue(&cfg),
    );
    let pump = Consumer::new(state.clone(), clock.clone(), Arc::new(handler), "bench".into());
    let notifiers = setup::notifiers(&cfg, clock.clone(), None).expect("channels");
    let worker = DeliveryWorker::new(outbox, clock, notifiers, setup::policy(&cfg));
    rt.block_on(async {
        pump.pump().await.expect("catch up");
        worker.pass().await.expect("drain");
    });
    let mut lat = Vec::new();
    for i in 0..300 {
        let t = Instant::now();
        rt.block_on(async {
            let e = NewEvent::new(Utc::now(), EventKind::OrderFilled, Severity::Info, format!("fill {i}"))
                .payload(serde_json::json!({"side": "sell", "qty": "0.01", "price": "65000", "fee": "0.65"}));
            state.append_events(vec![e]).await.expect("append");
            pump.pump().await.expect("pump");
            worker.pass().await.expect("send");
        });
        lat.push(t.elapsed());
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "fill event -> message at the Bot API (300 fills): p50 {:?}, p99 {:?}; target p99 500 ms; ratio {:.3}x",
        p(0.5),
        p(0.99),
        p(0.99).as_secs_f64() / 0.5
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
