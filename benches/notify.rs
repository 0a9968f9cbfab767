//! Notifications. (1) What writing a cycle's notifications adds to a cycle: after a trading cycle committed its
//! events (8 fills, 8 position changes, 8 signals, a finish and a repeated stale-data warning), one pass of the
//! notification consumer as the scheduler runs it — take the events the commit handed over (or read them),
//! record one delivery per (event, channel) with the fatigue rules, advance the cursor — on the embedded SQLite store and on
//! PostgreSQL (`MCBOT_TEST_PG_URL`, default the local server; a database is created and dropped). The outbox
//! grows as it would in service, the warning's earlier repeats included. Target under 1 ms. (2) From a fill
//! event in the log to the message arriving at a loopback Bot API (consumer pump + worker send over HTTP),
//! channel healthy, SQLite; target p99 under 500 ms.

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
use mcbot_stages::ports::{DeliveryStore, EventKind, NewEvent, Severity, Store};
use sqlx::{Connection, Executor, PgConnection};

const TOKEN: &str = "1:bench";
/// The requirement: what a cycle's notifications add to it.
const TARGET: Duration = Duration::from_millis(1);

/// One trading cycle's events, as the pipeline appends them.
fn cycle(n: i64) -> Vec<NewEvent> {
    let ts = Utc::now();
    let sym = Symbol::new("BTCUSDT").ok();
    let mut out = Vec::new();
    let mut push = |kind, sev, payload: serde_json::Value| {
        let mut e =
            NewEvent::new(ts, kind, sev, format!("{kind} {n}")).run(format!("trading-cycle@{n}")).payload(payload);
        e.symbol = sym.clone();
        out.push(e);
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

/// The notification consumer as the application builds it (with the trading state, for inhibition).
fn consumer(name: &str, store: &SqlStore, cfg: &NotifyConfig) -> NotificationConsumer {
    let outbox: Arc<dyn DeliveryStore> = Arc::new(store.clone());
    let state: Arc<dyn Store> = Arc::new(store.clone());
    NotificationConsumer::new(
        name,
        outbox,
        Some(state),
        setup::routing(cfg),
        setup::channel_rules(cfg),
        setup::fatigue(cfg),
    )
}

/// Times one consumer pass after each cycle's events were appended (the append is the cycle's, not timed).
fn bench_backend(c: &mut Criterion, rt: &tokio::runtime::Runtime, backend: &str, store: &SqlStore, cfg: &NotifyConfig) {
    let state: Arc<dyn Store> = Arc::new(store.clone());
    let handler = Arc::new(consumer("notify-bench", store, cfg));
    let pump = Consumer::new(state.clone(), Arc::new(SystemClock), handler, "bench".into());
    let mut n = 0;
    let mut spent = Vec::new();
    c.bench_function(&format!("notify_record_cycle/{backend}"), |b| {
        b.iter_custom(|iters| {
            let mut d = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                rt.block_on(state.append_events(cycle(n))).expect("append");
                let t = Instant::now();
                rt.block_on(pump.pump()).expect("pump");
                d += t.elapsed();
            }
            spent.push(d / u32::try_from(iters.max(1)).unwrap_or(1));
            d
        })
    });
    // The same cycles recorded by the handler alone (events read beforehand, untimed): the rest of a pass is
    // taking the events and the cursor's advance.
    let alone = consumer("notify-bench-record", store, cfg);
    let mut record = Vec::new();
    for _ in 0..200 {
        n += 1;
        let ids = rt.block_on(state.append_events(cycle(n))).expect("append");
        let after = ids.first().map_or(0, |id| id - 1);
        let query = mcbot_stages::ports::EventQuery { after, limit: 256, ..Default::default() };
        let last = rt.block_on(state.read_events(&query)).expect("read");
        let t = Instant::now();
        rt.block_on(alone.record(&last)).expect("record");
        record.push(t.elapsed());
    }
    record.sort();
    let counts = rt.block_on(store.delivery_counts()).expect("counts");
    let rows: i64 = counts.iter().map(|c| c.count).sum();
    spent.sort();
    if let Some(median) = spent.get(spent.len() / 2) {
        println!(
            "{backend}: a cycle's notifications (consumer pass: take 26 events, record 10 deliveries, advance) \
             median {median:?} over {n} cycles ({rows} outbox rows at the end); target {TARGET:?}; \
             ratio {:.2}x",
            median.as_secs_f64() / TARGET.as_secs_f64()
        );
    }
    println!(
        "{backend}: of which recording alone (the handler, events in hand): median {:?}",
        record[record.len() / 2]
    );
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
    bench_backend(c, &rt, "sqlite", &store, &cfg);

    let admin =
        std::env::var("MCBOT_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = format!("mcbot_bench_notify_{}", std::process::id());
    let pg_url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => panic!("MCBOT_TEST_PG_URL must end in /<database>"),
    };
    rt.block_on(async {
        let mut conn = PgConnection::connect(&admin).await.expect("PostgreSQL reachable (MCBOT_TEST_PG_URL)");
        conn.execute(format!("DROP DATABASE IF EXISTS {db}").as_str()).await.expect("drop");
        conn.execute(format!("CREATE DATABASE {db}").as_str()).await.expect("create");
    });
    let pg = rt.block_on(SqlStore::open(&pg_url)).expect("postgres");
    bench_backend(c, &rt, "postgres", &pg, &cfg);
    rt.block_on(async {
        pg.close().await;
        let mut conn = PgConnection::connect(&admin).await.expect("admin");
        let _ = conn.execute(format!("DROP DATABASE IF EXISTS {db}").as_str()).await;
    });

    // Fill event in the log -> message at the Bot API.
    let outbox: Arc<dyn DeliveryStore> = Arc::new(store.clone());
    let state: Arc<dyn Store> = Arc::new(store.clone());
    let clock = Arc::new(SystemClock);
    let handler = consumer("latency", &store, &cfg);
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
