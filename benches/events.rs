//! Appending to the event log in batches of one trading cycle's events (30: a start, 8 signals, 4 orders with
//! their acknowledgement, fill and position events, a finish), each batch its own transaction, on the embedded
//! SQLite store and on PostgreSQL (`MCBOT_TEST_PG_URL`, default the local server; a database is created and
//! dropped). Target: at least 20 000 events/s on each.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mcbot::store::SqlStore;
use mcbot_stages::domain::Symbol;
use mcbot_stages::ports::{EventKind, NewEvent, Severity, Store};
use sqlx::{Connection, Executor, PgConnection};

const BATCH: usize = 30;
const TARGET_PER_SEC: f64 = 20_000.0;

fn batch(n: u64) -> Vec<NewEvent> {
    let ts = DateTime::<Utc>::from_timestamp(1_700_000_000 + i64::try_from(n).unwrap_or(0), 0).unwrap_or_default();
    let btc = Symbol::new("BTCUSDT").ok();
    (0..BATCH)
        .map(|i| {
            let mut e = NewEvent::new(ts, EventKind::OrderFilled, Severity::Info, format!("fill {n}/{i}"))
                .run(format!("trading-cycle@{n}"))
                .payload(serde_json::json!({"qty": "0.01234", "price": "43210.5", "fee": "0.0432", "trade_id": i}));
            e.symbol = btc.clone();
            e
        })
        .collect()
}

fn bench_backend(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, store: &SqlStore) {
    let mut n = 0u64;
    let mut total = Duration::ZERO;
    let mut events = 0u64;
    let mut group = c.benchmark_group("event_append");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                n += 1;
                let ids = rt.block_on(store.append_events(batch(n))).expect("append");
                assert_eq!(ids.len(), BATCH);
            }
            let spent = t.elapsed();
            total += spent;
            events += iters * BATCH as u64;
            spent
        })
    });
    group.finish();
    if events > 0 {
        let per_sec = events as f64 / total.as_secs_f64();
        println!(
            "{name}: {per_sec:.0} events/s in batches of {BATCH}; target {TARGET_PER_SEC:.0}; ratio actual/target = {:.1}x",
            per_sec / TARGET_PER_SEC
        );
    }
}

fn bench_events(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = rt.block_on(SqlStore::open(&SqlStore::embedded_url(dir.path()))).expect("sqlite");
    bench_backend(c, &rt, "sqlite", &sqlite);

    let admin =
        std::env::var("MCBOT_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = format!("mcbot_bench_{}", std::process::id());
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => panic!("MCBOT_TEST_PG_URL must end in /<database>"),
    };
    rt.block_on(async {
        let mut conn = PgConnection::connect(&admin).await.expect("PostgreSQL reachable (MCBOT_TEST_PG_URL)");
        conn.execute(format!("DROP DATABASE IF EXISTS {db}").as_str()).await.expect("drop");
        conn.execute(format!("CREATE DATABASE {db}").as_str()).await.expect("create");
    });
    let pg = rt.block_on(SqlStore::open(&url)).expect("postgres");
    bench_backend(c, &rt, "postgres", &pg);
    rt.block_on(async {
        pg.close().await;
        let mut conn = PgConnection::connect(&admin).await.expect("admin");
        let _ = conn.execute(format!("DROP DATABASE IF EXISTS {db}").as_str()).await;
    });
}

criterion_group!(benches, bench_events);
criterion_main!(benches);
