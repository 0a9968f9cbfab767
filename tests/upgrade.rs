//! Upgrading a database written by the release before the event log, in place, with nothing lost: an SQLite
//! file and a PostgreSQL dump that release wrote (`mcbot run-once`, then a RiskCheck with the kill switch on),
//! kept in tests/fixtures/. The rows are read raw before the upgrade and through the store after it.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use mcbot::store::SqlStore;
use mcbot_stages::control::{Command, Issuer, issue};
use mcbot_stages::ports::{EventKind, EventQuery, JobClaim, Store, TradingMode};
use sqlx::{AnyPool, Row};

use crate::support::db::fresh_pg_url;

/// What the old release stored, read with plain SQL before any migration.
struct Before {
    orders: BTreeSet<(String, String)>,
    fills: BTreeSet<(String, String, String)>,
    positions: BTreeSet<(String, String)>,
    risk_events: Vec<(String, String)>,
    succeeded_run: (String, String, i64),
}

async fn read_before(url: &str) -> Before {
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(url).await.unwrap();
    let text = |r: &sqlx::any::AnyRow, i: usize| r.try_get::<String, _>(i).unwrap();
    let rows =
        sqlx::query("SELECT client_order_id, CAST(filled_qty AS TEXT) FROM orders").fetch_all(&pool).await.unwrap();
    let orders = rows.iter().map(|r| (text(r, 0), text(r, 1))).collect();
    let rows = sqlx::query("SELECT symbol, trade_id, CAST(qty AS TEXT) FROM fills").fetch_all(&pool).await.unwrap();
    let fills = rows.iter().map(|r| (text(r, 0), text(r, 1), text(r, 2))).collect();
    let rows = sqlx::query("SELECT symbol, CAST(qty AS TEXT) FROM positions").fetch_all(&pool).await.unwrap();
    let positions = rows.iter().map(|r| (text(r, 0), text(r, 1))).collect();
    let rows = sqlx::query("SELECT kind, message FROM risk_events ORDER BY id").fetch_all(&pool).await.unwrap();
    let risk_events = rows.iter().map(|r| (text(r, 0), text(r, 1))).collect();
    let row = sqlx::query("SELECT run_id, job, scheduled_at FROM job_runs WHERE status = 'succeeded'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let succeeded_run = (text(&row, 0), text(&row, 1), row.try_get::<i64, _>(2).unwrap());
    pool.close().await;
    Before { orders, fills, positions, risk_events, succeeded_run }
}

async fn upgraded_keeps_everything(url: &str) {
    let before = read_before(url).await;
    assert!(!before.orders.is_empty() && !before.fills.is_empty() && !before.risk_events.is_empty(), "fixture");
    let store = SqlStore::open(url).await.expect("the old database migrates in place");

    let mut orders = BTreeSet::new();
    let mut fills = BTreeSet::new();
    let all = store.fills_between(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC).await.unwrap();
    for f in &all {
        fills.insert((f.symbol.to_string(), f.trade_id.clone(), f.qty.to_string()));
        let o = store.order(&f.client_order_id).await.unwrap().expect("each fill's order is there");
        orders.insert((o.client_order_id.to_string(), o.filled_qty.to_string()));
    }
    assert_eq!(fills, before.fills);
    assert_eq!(orders, before.orders);
    let positions: BTreeSet<_> =
        store.positions().await.unwrap().into_iter().map(|p| (p.symbol.to_string(), p.qty.to_string())).collect();
    assert_eq!(positions, before.positions);

    let events = store.read_events(&EventQuery::default()).await.unwrap();
    assert_eq!(events.len(), before.risk_events.len(), "every risk event became an event");
    for (e, (kind, message)) in events.iter().zip(&before.risk_events) {
        assert_eq!(&e.event.message, message);
        assert_eq!(e.event.payload["legacy_kind"], kind.as_str());
    }
    assert_eq!(events[0].event.kind, EventKind::BreakerTripped, "the kill switch was a breaker");
    assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), (1..=events.len() as i64).collect::<Vec<_>>());

    // The old state is version 1 and changes through commands like any other.
    let state = store.load_state_versioned().await.unwrap();
    assert_eq!((state.version, state.value.trading), (1, TradingMode::Active));
    issue(&store, &Command::Pause, Issuer::Cli, "after the upgrade", Utc::now()).await.unwrap();
    let after = store.load_state_versioned().await.unwrap();
    assert_eq!(
        (after.version, after.value.trading, after.value.last_bar),
        (2, TradingMode::EntriesPaused, state.value.last_bar)
    );

    // The old ledger still says its bar is done; the next event gets the next id.
    let (run_id, job, at) = &before.succeeded_run;
    let at = DateTime::from_timestamp_millis(*at).unwrap();
    let me = mcbot_stages::ports::Claimant { pid: 1, host: "x".into() };
    let claim = store.claim_run(run_id, job, at, at, Duration::minutes(15), &me).await.unwrap();
    assert_eq!(claim, JobClaim::AlreadyDone);
    let paused = EventQuery { kinds: vec![EventKind::TradingPaused], ..Default::default() };
    assert_eq!(store.read_events(&paused).await.unwrap()[0].id, events.len() as i64 + 1);
    store.migrate().await.expect("a second start migrates nothing");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_file_of_the_previous_release_upgrades_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mcbot.db");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v0.1-sqlite.db"), &file).unwrap();
    upgraded_keeps_everything(&format!("sqlite://{}?mode=rwc", file.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_dump_of_the_previous_release_upgrades_in_place() {
    use sqlx::Connection;
    let db = fresh_pg_url().await;
    let dump =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v0.1-postgres.sql")).unwrap();
    // The dump is pg_dump's plain output (INSERTs); it sets its own search path, so it gets a connection of its own.
    let mut conn = sqlx::PgConnection::connect(db.url()).await.unwrap();
    sqlx::raw_sql(&dump).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    upgraded_keeps_everything(db.url()).await;
}
