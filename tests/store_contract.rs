//! The `Store` contract: one suite of cases, each run against both backends, SQLite (a file in a temporary
//! directory) and PostgreSQL (a fresh database on the local server), so the two stay interchangeable.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use mcbot::store::{Backend, PoolSettings, SqlStore};
use mcbot_stages::domain::{Candle, ClientOrderId, Fill, Order, OrderStatus, Position, RunId, Side, Symbol, Timeframe};
use mcbot_stages::ports::{
    BotState, Claimant, EquitySnapshot, EventKind, EventQuery, JobClaim, JobStatus, NewEvent, ReportRecord, RunFence,
    Severity, SignalRecord, Store, StoreError, TradingMode,
};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::json;
use sqlx::AnyPool;

use crate::support::db::TestStore;

/// Generates, for every case, one test per backend: `store_contract::sqlite::<case>` and
/// `store_contract::postgres::<case>`, each on its own fresh database.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = crate::support::db::test_store(mcbot::store::Backend::Sqlite).await;
                    super::$case(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = crate::support::db::test_store(mcbot::store::Backend::Postgres).await;
                    super::$case(&db).await;
                }
            )*
        }
    };
}

contract!(
    ping_and_backend_name,
    decimals_round_trip_exactly,
    claim_run_lifecycle,
    concurrent_claims_have_one_winner,
    stale_running_run_is_reclaimed,
    a_dead_claimants_run_is_taken_over_once,
    skipped_runs_are_done_and_never_overwrite,
    recent_runs_newest_first,
    finishing_an_unknown_run_is_an_error,
    orders_are_inserted_once,
    fills_are_inserted_once_and_ranged,
    positions_are_replaced,
    candles_upsert_order_and_limit,
    equity_before_and_between,
    bot_state_round_trips,
    signals_are_recorded_once_per_run,
    events_are_sequenced_and_read_by_query,
    a_unit_of_work_commits_all_or_nothing,
    consumer_cursors_are_leased_and_fenced,
    every_consumer_cursor_is_listed_against_the_head,
    events_are_pruned_by_age,
    a_reader_never_misses_an_event_committed_late,
    concurrent_state_writers_never_overwrite,
    reports_are_unique_per_kind_and_period,
    heartbeats_are_recorded,
    leases_exclude_other_holders_until_expiry,
    migrate_twice_is_a_noop,
    newer_schema_is_refused,
    corrupt_rows_name_table_and_column,
    every_statement_prepares_against_the_schema,
    columns_hold_native_types,
);

// ---------------------------------------------------------------------------------------------- fixtures

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("fixture time in range")
}

fn sym(s: &str) -> Symbol {
    Symbol::new(s).expect("fixture symbol")
}

fn order(id: &str, run: &str, status: OrderStatus, created: DateTime<Utc>) -> Order {
    Order {
        client_order_id: ClientOrderId::from_stored(id.to_owned()),
        run_id: run.to_owned(),
        symbol: sym("BTCUSDT"),
        side: Side::Buy,
        qty: dec!(0.00012),
        filled_qty: dec!(0),
        avg_price: None,
        status,
        exchange_order_id: None,
        created_at: created,
        reason: "sma cross up".to_owned(),
    }
}

fn fill(trade_id: &str, symbol: &str, ts: DateTime<Utc>) -> Fill {
    Fill {
        trade_id: trade_id.to_owned(),
        client_order_id: ClientOrderId::from_stored("mcb-1".to_owned()),
        symbol: sym(symbol),
        side: Side::Sell,
        qty: dec!(0.5),
        price: dec!(43210.12),
        fee: dec!(0.021605060),
        ts,
    }
}

fn candle(open_time: DateTime<Utc>, close: Decimal) -> Candle {
    Candle {
        open_time,
        open: dec!(100),
        high: close.max(dec!(100)) + dec!(1),
        low: dec!(99),
        close,
        volume: dec!(12.5),
    }
}

/// A second connection to the same database, for what the port does not offer (raw edits, schema checks).
async fn raw(db: &TestStore) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(&db.url).await.expect("raw connection to the test database")
}

// ---------------------------------------------------------------------------------------------- cases

async fn ping_and_backend_name(db: &TestStore) {
    let s: &dyn Store = &db.store;
    s.ping().await.expect("ping");
    let expected = match db.backend {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    assert_eq!(s.backend(), expected);
    assert_eq!(db.store.kind(), db.backend);
}

async fn decimals_round_trip_exactly(db: &TestStore) {
    let s = &db.store;
    let tiny = dec!(0.00000001);
    let big = dec!(123456789.123456789012);
    let p = Position { symbol: sym("BTCUSDT"), qty: tiny, avg_price: big, realized_pnl: dec!(-1.50) };
    s.save_position(&p).await.unwrap();
    let back = s.positions().await.unwrap();
    assert_eq!(back, vec![p]);
    // Exact including scale: no float ever touched the numbers.
    assert_eq!(back[0].qty.to_string(), "0.00000001");
    assert_eq!(back[0].avg_price.to_string(), "123456789.123456789012");
    assert_eq!(back[0].realized_pnl.to_string(), "-1.50");

    let mut o = order("mcb-dec", "run-1", OrderStatus::Filled, t(0));
    o.qty = big;
    o.filled_qty = tiny;
    o.avg_price = Some(dec!(0.1) + dec!(0.2));
    assert!(s.insert_order(&o).await.unwrap());
    let got = s.order(&o.client_order_id).await.unwrap().expect("stored order");
    assert_eq!(got, o);
    assert_eq!(got.avg_price.map(|d| d.to_string()), Some("0.3".to_owned()));

    let snap = EquitySnapshot { ts: t(0), equity: big, cash: tiny };
    s.insert_equity(&snap).await.unwrap();
    assert_eq!(s.equity_before(t(1)).await.unwrap(), Some(snap));
}

fn me() -> Claimant {
    Claimant { pid: 4242, host: "test-host".into() }
}

/// The attempt number of a successful claim, `None` otherwise.
fn attempt(c: &JobClaim) -> Option<i64> {
    match c {
        JobClaim::Claimed { attempt, .. } => Some(*attempt),
        _ => None,
    }
}

fn fence_of(c: JobClaim) -> RunFence {
    match c {
        JobClaim::Claimed { fence, .. } => fence,
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn busy(c: &JobClaim) -> bool {
    matches!(c, JobClaim::Busy { .. })
}

async fn claim_run_lifecycle(db: &TestStore) {
    let s = &db.store;
    let (job, at) = ("trading-cycle", t(3600));
    let run = RunId::new(job, at);
    let stale = Duration::minutes(10);

    let first = s.claim_run(run.as_str(), job, at, t(3605), stale, &me()).await.unwrap();
    assert_eq!(attempt(&first), Some(1));
    let held = s.claim_run(run.as_str(), job, at, t(3606), stale, &me()).await.unwrap();
    let JobClaim::Busy { holder: Some(holder) } = held else { panic!("busy with a holder: {held:?}") };
    assert_eq!((holder.claimant, holder.since), (Some(me()), t(3605)), "the claimant is named");

    let fence = fence_of(first);
    s.finish_run(&fence, JobStatus::Failed, t(3607), Some("exchange: 503"), None, vec![]).await.unwrap();
    let failed = s.recent_runs(Some(job), 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].status, JobStatus::Failed);
    assert_eq!(failed[0].error.as_deref(), Some("exchange: 503"));

    let second = s.claim_run(run.as_str(), job, at, t(3610), stale, &me()).await.unwrap();
    assert_eq!(attempt(&second), Some(2));
    let second = fence_of(second);
    assert_ne!(second.token, fence.token, "every claim has its own token");
    let outcome = json!({"orders": 2, "stages": {"signal": "ok"}, "equity": "1000.50"});
    let err = s.finish_run(&fence, JobStatus::Succeeded, t(3611), None, None, vec![]).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced(_)), "the first claim's token no longer finishes the run: {err}");
    s.finish_run(&second, JobStatus::Succeeded, t(3612), None, Some(&outcome), vec![]).await.unwrap();
    assert_eq!(s.claim_run(run.as_str(), job, at, t(3700), stale, &me()).await.unwrap(), JobClaim::AlreadyDone);

    let rec = s.last_success(job).await.unwrap().expect("a success");
    assert_eq!(rec.run_id, run.as_str());
    assert_eq!(rec.job, job);
    assert_eq!(rec.scheduled_at, at);
    assert_eq!(rec.started_at, t(3610));
    assert_eq!(rec.finished_at, Some(t(3612)));
    assert_eq!(rec.duration_ms(), Some(2000));
    assert_eq!(rec.status, JobStatus::Succeeded);
    assert_eq!(rec.attempt, 2);
    assert_eq!(rec.error, None, "a re-claim clears the earlier error");
    assert_eq!(rec.outcome, Some(outcome));
    assert_eq!(s.last_success("other-job").await.unwrap(), None);

    // The ledger keys on the scheduled time: the next bar is a new run.
    let next = t(7200);
    let claim = s.claim_run(RunId::new(job, next).as_str(), job, next, t(7205), stale, &me()).await.unwrap();
    assert_eq!(attempt(&claim), Some(1));
}

async fn concurrent_claims_have_one_winner(db: &TestStore) {
    let job = "trading-cycle";
    let stale = Duration::minutes(10);
    for round in 0..4_i64 {
        let at = t(round * 3600);
        let run = RunId::new(job, at);
        // First a fresh claim race, then (after a failure) a re-claim race.
        for expected_attempt in [1, 2] {
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let store = db.store.clone();
                let run = run.clone();
                tasks.push(tokio::spawn(async move {
                    store.claim_run(run.as_str(), job, at, at + Duration::seconds(expected_attempt), stale, &me()).await
                }));
            }
            let mut claimed = Vec::new();
            for task in tasks {
                match task.await.expect("claim task").expect("claim") {
                    JobClaim::Claimed { attempt, fence } => claimed.push((attempt, fence)),
                    JobClaim::Busy { .. } => {}
                    JobClaim::AlreadyDone => panic!("nothing finished yet"),
                }
            }
            assert_eq!(claimed.len(), 1, "round {round}: exactly one of 8 claimers wins");
            let (won, fence) = claimed.remove(0);
            assert_eq!(won, expected_attempt);
            if expected_attempt == 1 {
                db.store
                    .finish_run(&fence, JobStatus::Failed, at + Duration::seconds(1), Some("x"), None, vec![])
                    .await
                    .unwrap();
            }
        }
    }
}

async fn stale_running_run_is_reclaimed(db: &TestStore) {
    let s = &db.store;
    let (job, at) = ("trading-cycle", t(0));
    let run = RunId::new(job, at);
    let stale = Duration::minutes(5);
    let first = fence_of(s.claim_run(run.as_str(), job, at, t(10), stale, &me()).await.unwrap());
    // Still within the stale window: the first claimer may be alive.
    assert!(busy(&s.claim_run(run.as_str(), job, at, t(10 + 299), stale, &me()).await.unwrap()));
    assert!(busy(&s.claim_run(run.as_str(), job, at, t(10 + 300), stale, &me()).await.unwrap()));
    // Past it: the first claimer's process died; take over.
    let second = s.claim_run(run.as_str(), job, at, t(10 + 301), stale, &me()).await.unwrap();
    assert_eq!(attempt(&second), Some(2));
    let runs = s.recent_runs(Some(job), 1).await.unwrap();
    assert_eq!(runs[0].status, JobStatus::Running);
    assert_eq!(runs[0].started_at, t(311));
    // And the new claim is fresh again.
    assert!(busy(&s.claim_run(run.as_str(), job, at, t(320), stale, &me()).await.unwrap()));
    // The stalled first claimant wakes up: every write it makes for the run is refused.
    let mut uow = s.begin().await.unwrap();
    let err = uow.fence(&first).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced(_)), "{err}");
    drop(uow);
    let err = s.finish_run(&first, JobStatus::Succeeded, t(330), None, None, vec![]).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced(_)), "{err}");
    let mut uow = s.begin().await.unwrap();
    uow.fence(&fence_of(second)).await.expect("the live claim writes");
    uow.commit().await.unwrap();
}

async fn a_dead_claimants_run_is_taken_over_once(db: &TestStore) {
    let s = &db.store;
    let (job, at) = ("trading-cycle", t(0));
    let run = RunId::new(job, at);
    let stale = Duration::minutes(15);
    let dead = Claimant { pid: 1, host: "test-host".into() };
    assert!(attempt(&s.claim_run(run.as_str(), job, at, t(10), stale, &dead).await.unwrap()).is_some());
    let JobClaim::Busy { holder: Some(holder) } =
        s.claim_run(run.as_str(), job, at, t(11), stale, &me()).await.unwrap()
    else {
        panic!("busy")
    };
    // Two processes that both saw the dead claim race to take it over: one wins.
    let a = s.take_over_run(run.as_str(), holder.token.as_deref(), t(12), &me()).await.unwrap();
    let b = s.take_over_run(run.as_str(), holder.token.as_deref(), t(12), &me()).await.unwrap();
    assert_eq!(a.as_ref().and_then(attempt), Some(2));
    assert_eq!(b, None, "the token changed with the first take-over");
    let rec = &s.recent_runs(Some(job), 1).await.unwrap()[0];
    assert_eq!((rec.status, rec.started_at), (JobStatus::Running, t(12)));
}

async fn skipped_runs_are_done_and_never_overwrite(db: &TestStore) {
    let s = &db.store;
    let job = "trading-cycle";
    let stale = Duration::minutes(5);
    let skipped_at = t(0);
    let skipped = RunId::new(job, skipped_at);
    s.record_skipped_run(skipped.as_str(), job, skipped_at, t(5), "overlap: previous run still going").await.unwrap();
    assert_eq!(
        s.claim_run(skipped.as_str(), job, skipped_at, t(6), stale, &me()).await.unwrap(),
        JobClaim::AlreadyDone
    );
    let rec = &s.recent_runs(Some(job), 1).await.unwrap()[0];
    assert_eq!(rec.status, JobStatus::Skipped);
    assert_eq!(rec.error.as_deref(), Some("overlap: previous run still going"));
    assert_eq!(rec.finished_at, Some(t(5)));

    // A skip for a scheduled time that is already running leaves the run alone.
    let running_at = t(3600);
    let running = RunId::new(job, running_at);
    assert!(matches!(
        s.claim_run(running.as_str(), job, running_at, t(3601), stale, &me()).await.unwrap(),
        JobClaim::Claimed { .. }
    ));
    s.record_skipped_run(running.as_str(), job, running_at, t(3602), "late").await.unwrap();
    let rec = &s.recent_runs(Some(job), 1).await.unwrap()[0];
    assert_eq!((rec.scheduled_at, rec.status), (running_at, JobStatus::Running));
}

async fn recent_runs_newest_first(db: &TestStore) {
    let s = &db.store;
    let stale = Duration::minutes(5);
    for (job, h) in [("trading-cycle", 1), ("health", 2), ("trading-cycle", 3), ("report", 0)] {
        let at = t(h * 3600);
        s.claim_run(RunId::new(job, at).as_str(), job, at, at, stale, &me()).await.unwrap();
    }
    let all = s.recent_runs(None, 10).await.unwrap();
    let order: Vec<_> = all.iter().map(|r| (r.job.as_str(), r.scheduled_at)).collect();
    assert_eq!(
        order,
        vec![("trading-cycle", t(3 * 3600)), ("health", t(2 * 3600)), ("trading-cycle", t(3600)), ("report", t(0))]
    );
    assert_eq!(s.recent_runs(None, 2).await.unwrap().len(), 2);
    let cycles = s.recent_runs(Some("trading-cycle"), 10).await.unwrap();
    assert_eq!(cycles.iter().map(|r| r.scheduled_at).collect::<Vec<_>>(), vec![t(3 * 3600), t(3600)]);
    assert!(s.recent_runs(Some("nope"), 10).await.unwrap().is_empty());
    assert!(s.recent_runs(None, 0).await.unwrap().is_empty());
}

async fn finishing_an_unknown_run_is_an_error(db: &TestStore) {
    let fence = RunFence { run_id: "never-claimed".into(), token: "t".into() };
    let err = db.store.finish_run(&fence, JobStatus::Succeeded, t(0), None, None, vec![]).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced(ref m) if m.contains("never-claimed")), "{err}");
}

async fn orders_are_inserted_once(db: &TestStore) {
    let s = &db.store;
    let a = order("mcb-a", "run-1", OrderStatus::PendingNew, t(1));
    let b = order("mcb-b", "run-1", OrderStatus::New, t(2));
    let c = order("mcb-c", "run-2", OrderStatus::PartiallyFilled, t(3));
    let d = order("mcb-d", "run-2", OrderStatus::Canceled, t(4));
    for o in [&a, &b, &c, &d] {
        assert!(s.insert_order(o).await.unwrap());
    }
    // A retried run recomputes the same client order id: the second insert is refused and changes nothing.
    let mut dup = a.clone();
    dup.qty = dec!(99);
    assert!(!s.insert_order(&dup).await.unwrap());
    assert_eq!(s.order(&a.client_order_id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.order(&ClientOrderId::from_stored("mcb-zzz".into())).await.unwrap(), None);

    let ids = |v: Vec<Order>| v.into_iter().map(|o| o.client_order_id.as_str().to_owned()).collect::<Vec<_>>();
    assert_eq!(ids(s.open_orders().await.unwrap()), ["mcb-a", "mcb-b", "mcb-c"]);
    assert_eq!(ids(s.orders_of_run("run-2").await.unwrap()), ["mcb-c", "mcb-d"]);

    let mut filled = a.clone();
    filled.status = OrderStatus::Filled;
    filled.filled_qty = a.qty;
    filled.avg_price = Some(dec!(43210.5));
    filled.exchange_order_id = Some("8837261".into());
    s.update_order(&filled).await.unwrap();
    assert_eq!(s.order(&a.client_order_id).await.unwrap(), Some(filled));
    assert_eq!(ids(s.open_orders().await.unwrap()), ["mcb-b", "mcb-c"]);

    let ghost = order("mcb-ghost", "run-9", OrderStatus::New, t(9));
    assert!(matches!(s.update_order(&ghost).await, Err(StoreError::Corrupt(_))));
}

async fn fills_are_inserted_once_and_ranged(db: &TestStore) {
    let s = &db.store;
    let f1 = fill("1001", "BTCUSDT", t(10));
    assert!(s.insert_fill(&f1).await.unwrap());
    assert!(!s.insert_fill(&f1).await.unwrap(), "a fill read twice is stored once");
    // Binance numbers trades per symbol: the same id on another symbol is another fill.
    let f2 = fill("1001", "ETHUSDT", t(20));
    assert!(s.insert_fill(&f2).await.unwrap());
    let f3 = fill("1002", "BTCUSDT", t(30));
    assert!(s.insert_fill(&f3).await.unwrap());

    assert_eq!(s.fills_between(t(0), t(100)).await.unwrap(), vec![f1.clone(), f2.clone(), f3.clone()]);
    // [from, to): the start is included, the end is not.
    assert_eq!(s.fills_between(t(10), t(30)).await.unwrap(), vec![f1, f2]);
    assert!(s.fills_between(t(31), t(100)).await.unwrap().is_empty());
}

async fn positions_are_replaced(db: &TestStore) {
    let s = &db.store;
    assert!(s.positions().await.unwrap().is_empty());
    let mut btc = Position::flat(sym("BTCUSDT"));
    btc.qty = dec!(0.5);
    btc.avg_price = dec!(40000);
    let eth = Position { symbol: sym("ETHUSDT"), qty: dec!(2), avg_price: dec!(2000), realized_pnl: dec!(0) };
    s.save_position(&eth).await.unwrap();
    s.save_position(&btc).await.unwrap();
    // Sold out: flat, but the realised P&L stays on record.
    let flat = Position { symbol: sym("BTCUSDT"), qty: dec!(0), avg_price: dec!(0), realized_pnl: dec!(512.25) };
    s.save_position(&flat).await.unwrap();
    assert_eq!(s.positions().await.unwrap(), vec![flat, eth]);
}

async fn candles_upsert_order_and_limit(db: &TestStore) {
    let s = &db.store;
    let btc = sym("BTCUSDT");
    let h1: Timeframe = "1h".parse().unwrap();
    let bars: Vec<Candle> = (0..5).map(|i| candle(t(i * 3600), dec!(100) + Decimal::from(i))).collect();
    s.save_candles(&btc, h1, &bars).await.unwrap();
    // Another series must not leak in.
    s.save_candles(&sym("ETHUSDT"), h1, &bars).await.unwrap();
    s.save_candles(&btc, "4h".parse().unwrap(), &bars[..1]).await.unwrap();
    // A corrected bar replaces the stored one.
    let fixed = candle(t(3 * 3600), dec!(777.77));
    s.save_candles(&btc, h1, std::slice::from_ref(&fixed)).await.unwrap();
    s.save_candles(&btc, h1, &[]).await.unwrap();

    let got = s.candles(&btc, h1, t(4 * 3600), 3).await.unwrap();
    assert_eq!(got, vec![bars[1].clone(), bars[2].clone(), fixed.clone()], "newest 3 before `until`, oldest first");
    assert_eq!(s.candles(&btc, h1, t(100 * 3600), 100).await.unwrap().len(), 5);
    assert!(s.candles(&btc, h1, t(0), 10).await.unwrap().is_empty(), "`until` is exclusive");
    assert!(s.candles(&btc, "1d".parse().unwrap(), t(100 * 3600), 10).await.unwrap().is_empty());

    // A backfill larger than one statement's chunk lands completely.
    let backfill: Vec<Candle> = (0..250).map(|i| candle(t(-(i + 1) * 3600), dec!(50.5))).collect();
    s.save_candles(&btc, h1, &backfill).await.unwrap();
    let all = s.candles(&btc, h1, t(100 * 3600), 1000).await.unwrap();
    assert_eq!(all.len(), 255);
    assert!(all.windows(2).all(|w| w[0].open_time < w[1].open_time));

    // Several symbols' new bars in one write (DataCollection's, once per cycle), each under its own symbol.
    let sets = vec![(sym("SOLUSDT"), bars[..2].to_vec()), (sym("XRPUSDT"), bars[..3].to_vec())];
    s.save_candle_sets(h1, &sets).await.unwrap();
    assert_eq!(s.candles(&sym("SOLUSDT"), h1, t(100 * 3600), 10).await.unwrap().len(), 2);
    assert_eq!(s.candles(&sym("XRPUSDT"), h1, t(100 * 3600), 10).await.unwrap().len(), 3);
}

async fn equity_before_and_between(db: &TestStore) {
    let s = &db.store;
    assert_eq!(s.equity_before(t(0)).await.unwrap(), None);
    let snaps: Vec<EquitySnapshot> = (0..4)
        .map(|i| EquitySnapshot { ts: t(i * 60), equity: dec!(1000) + Decimal::from(i), cash: dec!(500.25) })
        .collect();
    for snap in &snaps {
        s.insert_equity(snap).await.unwrap();
    }
    // A rerun at the same instant overwrites.
    let rerun = EquitySnapshot { ts: t(120), equity: dec!(999.99), cash: dec!(1) };
    s.insert_equity(&rerun).await.unwrap();

    assert_eq!(s.equity_before(t(120)).await.unwrap(), Some(snaps[1].clone()), "strictly before");
    assert_eq!(s.equity_before(t(121)).await.unwrap(), Some(rerun.clone()));
    assert_eq!(s.equity_between(t(60), t(180)).await.unwrap(), vec![snaps[1].clone(), rerun]);
    assert_eq!(s.equity_between(t(0), t(10_000)).await.unwrap().len(), 4);
}

/// Saves `state` over whatever version is stored (test set-up only: production code goes through commands).
async fn save_state(s: &SqlStore, state: &BotState) {
    let version = s.load_state_versioned().await.unwrap().version;
    let mut uow = s.begin().await.unwrap();
    uow.save_state(state, version).await.unwrap();
    uow.commit().await.unwrap();
}

async fn bot_state_round_trips(db: &TestStore) {
    let s = &db.store;
    assert_eq!(s.load_state().await.unwrap(), BotState::default(), "default when never saved");
    assert_eq!(s.load_state_versioned().await.unwrap().version, 0);
    let mut tripped = BTreeMap::new();
    tripped.insert("daily_loss".to_owned(), "lost 3.2% today, limit 3%".to_owned());
    let state = BotState {
        trading: TradingMode::EntriesPaused,
        safe_mode: true,
        safe_mode_reason: Some("reconcile drift on BTCUSDT".into()),
        peak_equity: Some(dec!(10432.123456789)),
        day_start: Some((t(0), dec!(10000.01))),
        week_start: Some((t(-86_400), dec!(9900))),
        cash: Some(dec!(0.00000001)),
        last_bar: Some(t(3600)),
        tripped,
        unmanaged: Some(BTreeMap::from([("BTC".to_owned(), dec!(0.5))])),
        ..Default::default()
    };
    save_state(s, &state).await;
    let read = s.load_state_versioned().await.unwrap();
    assert_eq!((read.value, read.version), (state.clone(), 1));
    let cleared = BotState { safe_mode: false, safe_mode_reason: None, tripped: BTreeMap::new(), ..state };
    save_state(s, &cleared).await;
    let read = s.load_state_versioned().await.unwrap();
    assert_eq!((read.value, read.version), (cleared, 2));
    // A writer holding version 1 is refused and changes nothing.
    let mut uow = s.begin().await.unwrap();
    let err = uow.save_state(&BotState::default(), 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    drop(uow);
    assert_eq!(s.load_state_versioned().await.unwrap().version, 2);
}

async fn concurrent_state_writers_never_overwrite(db: &TestStore) {
    // 8 writers each add their own breaker 5 times through the versioned state: with last-writer-wins some
    // would vanish; with compare-and-set and re-apply every one survives, and the version counts every write.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..5 {
                mcbot_stages::control::mutate_state(&store, None, |st| {
                    st.tripped.insert(format!("w{w}-{i}"), "x".into());
                    vec![NewEvent::new(t(0), EventKind::BreakerTripped, Severity::Warning, format!("w{w}-{i}"))]
                })
                .await
                .expect("state change applied");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let read = db.store.load_state_versioned().await.unwrap();
    assert_eq!(read.value.tripped.len(), 40, "no writer overwrote another");
    assert_eq!(read.version, 40);
    let events = db.store.read_events(&EventQuery::default()).await.unwrap();
    assert_eq!(events.len(), 40, "one event per applied change, none for a lost race");
}

async fn signals_are_recorded_once_per_run(db: &TestStore) {
    let s = &db.store;
    let sig = |symbol: &str, w: Decimal, reason: &str| SignalRecord {
        run_id: "run-1".into(),
        ts: t(0),
        symbol: sym(symbol),
        strategy: "sma_cross".into(),
        target_weight: w,
        reason: reason.into(),
    };
    s.insert_signal(&sig("ETHUSDT", dec!(0), "flat")).await.unwrap();
    s.insert_signal(&sig("BTCUSDT", dec!(0.25), "fast above slow")).await.unwrap();
    // The retried run decides again: replaced, not doubled.
    let again = sig("BTCUSDT", dec!(0.125), "fast above slow, vol scaled");
    s.insert_signal(&again).await.unwrap();
    assert_eq!(s.signals_of_run("run-1").await.unwrap(), vec![again, sig("ETHUSDT", dec!(0), "flat")]);
    assert!(s.signals_of_run("run-2").await.unwrap().is_empty());
}

fn ev(secs: i64, kind: EventKind, severity: Severity) -> NewEvent {
    NewEvent::new(t(secs), kind, severity, format!("{kind} at {secs}"))
}

async fn events_are_sequenced_and_read_by_query(db: &TestStore) {
    let s = &db.store;
    let first = ev(0, EventKind::StaleData, Severity::Warning)
        .run("run-1")
        .symbol(&sym("BTCUSDT"))
        .payload(json!({"qty": "0.00000001", "nested": {"a": [1, 2]}}))
        .dedup("stale_data:BTCUSDT");
    let ids = s
        .append_events(vec![
            first.clone(),
            ev(10, EventKind::BreakerTripped, Severity::Critical),
            ev(10, EventKind::Signal, Severity::Info),
        ])
        .await
        .unwrap();
    assert_eq!(ids, vec![1, 2, 3], "ids start at 1 and follow the append order");
    // Identical events are all kept, and ids go on without a gap.
    assert_eq!(s.append_events(vec![first.clone()]).await.unwrap(), vec![4]);
    assert_eq!(s.append_events(vec![]).await.unwrap(), Vec::<i64>::new());

    let all = s.read_events(&EventQuery::default()).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(all[0].event, first, "every field round-trips");
    let after = s.read_events(&EventQuery { after: 2, ..Default::default() }).await.unwrap();
    assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3, 4]);
    let kinds = EventQuery { kinds: vec![EventKind::Signal, EventKind::BreakerTripped], ..Default::default() };
    assert_eq!(s.read_events(&kinds).await.unwrap().iter().map(|e| e.id).collect::<Vec<_>>(), vec![2, 3]);
    let loud = EventQuery { min_severity: Some(Severity::Warning), limit: 2, ..Default::default() };
    assert_eq!(s.read_events(&loud).await.unwrap().iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2]);
    let recent = s.recent_events(Severity::Warning, 10).await.unwrap();
    assert_eq!(recent.iter().map(|e| e.id).collect::<Vec<_>>(), vec![4, 2, 1], "newest first, info left out");
}

async fn a_unit_of_work_commits_all_or_nothing(db: &TestStore) {
    let s = &db.store;
    let o = order("mcb-a", "run-1", OrderStatus::PendingNew, t(1));
    // Dropped without commit: neither the order nor its event exists.
    let mut uow = s.begin().await.unwrap();
    assert!(uow.insert_order(&o).await.unwrap());
    uow.append(ev(1, EventKind::OrderPlaced, Severity::Info));
    drop(uow);
    assert_eq!(s.order(&o.client_order_id).await.unwrap(), None);
    assert!(s.read_events(&EventQuery::default()).await.unwrap().is_empty());
    // A failing write in the middle: the caller gives up, nothing of the unit is written.
    let mut uow = s.begin().await.unwrap();
    assert!(uow.insert_order(&o).await.unwrap());
    uow.insert_fill(&fill("1", "BTCUSDT", t(2))).await.unwrap();
    let missing = order("mcb-never-inserted", "run-1", OrderStatus::Filled, t(1));
    assert!(uow.update_order(&missing).await.is_err());
    drop(uow);
    assert_eq!(s.order(&o.client_order_id).await.unwrap(), None);
    assert!(s.fills_between(t(0), t(10)).await.unwrap().is_empty());
    // Committed: everything, with the event.
    let mut uow = s.begin().await.unwrap();
    uow.insert_order(&o).await.unwrap();
    uow.insert_fill(&fill("1", "BTCUSDT", t(2))).await.unwrap();
    let mut p = Position::flat(sym("BTCUSDT"));
    p.qty = dec!(0.5);
    uow.save_position(&p).await.unwrap();
    assert_eq!(uow.position(&sym("BTCUSDT")).await.unwrap(), Some(p.clone()), "a unit reads its own writes");
    uow.append(ev(2, EventKind::OrderFilled, Severity::Info));
    assert_eq!(uow.commit().await.unwrap(), vec![1]);
    assert!(s.order(&o.client_order_id).await.unwrap().is_some());
    assert_eq!(s.positions().await.unwrap(), vec![p]);
}

async fn consumer_cursors_are_leased_and_fenced(db: &TestStore) {
    let s = &db.store;
    let ttl = Duration::seconds(60);
    assert_eq!(s.claim_consumer("alerts", "a", t(0), ttl).await.unwrap(), Some(0), "a new consumer starts at 0");
    assert_eq!(s.claim_consumer("alerts", "b", t(30), ttl).await.unwrap(), None, "held by a until t=60");
    assert!(s.advance_consumer("alerts", "a", 7, t(31)).await.unwrap());
    assert!(!s.advance_consumer("alerts", "b", 9, t(31)).await.unwrap(), "a non-holder cannot move the cursor");
    assert!(!s.advance_consumer("alerts", "a", 3, t(32)).await.unwrap(), "the cursor never goes back");
    assert_eq!(s.claim_consumer("alerts", "a", t(40), ttl).await.unwrap(), Some(7), "renewal keeps the cursor");
    // a stops renewing; b takes over after expiry and resumes at a's cursor; a is fenced out.
    assert_eq!(s.claim_consumer("alerts", "b", t(101), ttl).await.unwrap(), Some(7));
    assert!(!s.advance_consumer("alerts", "a", 8, t(102)).await.unwrap());
    assert_eq!(s.claim_consumer("reports", "a", t(102), ttl).await.unwrap(), Some(0), "cursors are per consumer");
}

async fn every_consumer_cursor_is_listed_against_the_head(db: &TestStore) {
    let s = &db.store;
    let ttl = Duration::seconds(60);
    let none = s.consumer_cursors().await.unwrap();
    assert_eq!((none.head, none.cursors.len()), (0, 0), "an empty log, no consumer");
    s.append_events((0..5).map(|i| ev(i, EventKind::Signal, Severity::Info)).collect()).await.unwrap();
    assert_eq!(s.consumer_cursors().await.unwrap().head, 5, "the head is known before any consumer claims");
    for name in ["notify", "metrics", "alerts-log"] {
        assert_eq!(s.claim_consumer(name, "a", t(10), ttl).await.unwrap(), Some(0));
    }
    assert!(s.advance_consumer("metrics", "a", 5, t(11)).await.unwrap());
    assert!(s.advance_consumer("notify", "a", 2, t(12)).await.unwrap());
    let all = s.consumer_cursors().await.unwrap();
    assert_eq!(all.head, 5);
    let seen: Vec<(&str, i64, i64)> =
        all.cursors.iter().map(|c| (c.consumer.as_str(), c.last_id, all.lag(c))).collect();
    assert_eq!(seen, vec![("alerts-log", 0, 5), ("metrics", 5, 0), ("notify", 2, 3)], "by name, each exact");
    let notify = all.cursors.iter().find(|c| c.consumer == "notify").unwrap();
    assert_eq!(notify.updated_at, t(12), "when the cursor last moved");
}

async fn events_are_pruned_by_age(db: &TestStore) {
    let s = &db.store;
    s.append_events(vec![
        ev(0, EventKind::Signal, Severity::Info),
        ev(100, EventKind::Signal, Severity::Info),
        ev(200, EventKind::Signal, Severity::Info),
    ])
    .await
    .unwrap();
    assert_eq!(s.prune_events(t(100)).await.unwrap(), 1);
    let left = s.read_events(&EventQuery::default()).await.unwrap();
    assert_eq!(left.iter().map(|e| e.id).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(s.append_events(vec![ev(300, EventKind::Signal, Severity::Info)]).await.unwrap(), vec![4]);
}

async fn reports_are_unique_per_kind_and_period(db: &TestStore) {
    let s = &db.store;
    let daily =
        ReportRecord { kind: "daily".into(), period_start: t(0), period_end: t(86_400), body: json!({"pnl": "12.5"}) };
    s.insert_report(&daily).await.unwrap();
    let weekly = ReportRecord { kind: "weekly".into(), body: json!({"pnl": "40"}), ..daily.clone() };
    s.insert_report(&weekly).await.unwrap();
    // Recomputed: the second report for the same kind and period replaces the first.
    let recomputed = ReportRecord { body: json!({"pnl": "13.75", "trades": 4}), ..daily.clone() };
    s.insert_report(&recomputed).await.unwrap();
    assert_eq!(db.store.report("daily", t(0)).await.unwrap(), Some(recomputed));
    assert_eq!(db.store.report("weekly", t(0)).await.unwrap(), Some(weekly));
    assert_eq!(db.store.report("daily", t(86_400)).await.unwrap(), None);
}

async fn heartbeats_are_recorded(db: &TestStore) {
    let s = &db.store;
    assert_eq!(db.store.latest_heartbeat().await.unwrap(), None);
    s.insert_heartbeat(t(0), true, &json!({"exchange": "ok"})).await.unwrap();
    s.insert_heartbeat(t(60), false, &json!({"exchange": "timeout", "lag_ms": 5000})).await.unwrap();
    let hb = db.store.latest_heartbeat().await.unwrap().expect("a heartbeat");
    assert_eq!((hb.ts, hb.ok), (t(60), false));
    assert_eq!(hb.detail, json!({"exchange": "timeout", "lag_ms": 5000}));
    s.insert_heartbeat(t(120), true, &json!({})).await.unwrap();
    assert!(db.store.latest_heartbeat().await.unwrap().expect("a heartbeat").ok);
}

async fn leases_exclude_other_holders_until_expiry(db: &TestStore) {
    let s = &db.store;
    let ttl = Duration::seconds(30);
    assert!(s.try_acquire_lease("trading-cycle", "replica-a", t(0), ttl).await.unwrap());
    assert!(!s.try_acquire_lease("trading-cycle", "replica-b", t(10), ttl).await.unwrap());
    // Other leases are independent.
    assert!(s.try_acquire_lease("reports", "replica-b", t(10), ttl).await.unwrap());
    // The holder renews, pushing expiry to t(50).
    assert!(s.try_acquire_lease("trading-cycle", "replica-a", t(20), ttl).await.unwrap());
    assert!(!s.try_acquire_lease("trading-cycle", "replica-b", t(49), ttl).await.unwrap());
    // Expired: replica-b takes over, and replica-a is now the one refused.
    assert!(s.try_acquire_lease("trading-cycle", "replica-b", t(50), ttl).await.unwrap());
    assert!(!s.try_acquire_lease("trading-cycle", "replica-a", t(51), ttl).await.unwrap());
    assert!(!s.release_lease("trading-cycle", "replica-a").await.unwrap(), "only the holder can release");
    assert!(s.release_lease("trading-cycle", "replica-b").await.unwrap());
    assert!(s.try_acquire_lease("trading-cycle", "replica-a", t(52), ttl).await.unwrap());

    // Two replicas racing for a free lease: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move { store.try_acquire_lease("race", &format!("r{i}"), t(0), ttl).await }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.expect("lease task").expect("lease"));
    }
    assert_eq!(winners, 1);
}

async fn migrate_twice_is_a_noop(db: &TestStore) {
    let s = &db.store;
    s.save_position(&Position::flat(sym("BTCUSDT"))).await.unwrap();
    let pool = raw(db).await;
    let count = || sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(&pool);
    let before = count().await.unwrap();
    assert!(before >= 1);
    s.migrate().await.expect("second migrate");
    s.migrate().await.expect("third migrate");
    assert_eq!(count().await.unwrap(), before);
    assert_eq!(s.positions().await.unwrap().len(), 1, "data survives");
    // A second process opening the same database migrates nothing and sees the data.
    let other = SqlStore::open(&db.url).await.expect("second store");
    assert_eq!(other.positions().await.unwrap().len(), 1);
    other.close().await;
    pool.close().await;
}

async fn newer_schema_is_refused(db: &TestStore) {
    let pool = raw(db).await;
    let insert = match db.backend {
        Backend::Postgres => {
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99999, 'from a newer build', TRUE, '\\x00'::bytea, 1)"
        }
        Backend::Sqlite => {
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99999, 'from a newer build', TRUE, X'00', 1)"
        }
    };
    sqlx::query(insert).execute(&pool).await.expect("fake a newer migration");
    let err = db.store.migrate().await.unwrap_err();
    assert!(matches!(err, StoreError::Schema(ref m) if m.contains("99999")), "{err}");
    pool.close().await;
}

async fn corrupt_rows_name_table_and_column(db: &TestStore) {
    let s = &db.store;
    s.save_position(&Position::flat(sym("BTCUSDT"))).await.unwrap();
    save_state(s, &BotState::default()).await;
    let pool = raw(db).await;
    sqlx::query("UPDATE positions SET symbol = 'btc; drop'").execute(&pool).await.unwrap();
    let err = s.positions().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(ref m) if m.contains("positions.symbol")), "{err}");

    let bad_state = match db.backend {
        Backend::Postgres => "UPDATE bot_state SET value = '{\"safe_mode\": \"yes\"}'::jsonb",
        Backend::Sqlite => "UPDATE bot_state SET value = '{\"safe_mode\": \"yes\"}'",
    };
    sqlx::query(bad_state).execute(&pool).await.unwrap();
    let err = s.load_state().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(ref m) if m.contains("bot_state.value")), "{err}");
    pool.close().await;
}

/// Every statement the store runs is prepared against the migrated schema: a renamed column or SQL one engine
/// cannot parse fails here instead of in the trading cycle.
async fn every_statement_prepares_against_the_schema(db: &TestStore) {
    let n = db.store.check_statements().await.expect("every statement prepares");
    assert!(n >= 40, "the catalogue lists the store's statements ({n})");
    // A column the statements rely on, gone: the check names the statement that cannot run.
    let pool = raw(db).await;
    sqlx::query("ALTER TABLE fills RENAME COLUMN fee TO fee_paid").execute(&pool).await.unwrap();
    let err = db.store.check_statements().await.unwrap_err();
    assert!(matches!(err, StoreError::Schema(ref m) if m.contains("fills")), "{err}");
    pool.close().await;
}

/// Money, instants and details are stored as what they are, so SQL users and Grafana read them without
/// conversion: NUMERIC, TIMESTAMPTZ and JSONB on PostgreSQL; SQLite keeps exact decimal text, epoch milliseconds
/// and JSON text.
async fn columns_hold_native_types(db: &TestStore) {
    let s = &db.store;
    let t = t(9);
    let mut f = fill("t-native", "BTCUSDT", t);
    f.fee = dec!(0.000000012345678901);
    s.insert_fill(&f).await.unwrap();
    s.append_events(vec![NewEvent::new(t, EventKind::Started, Severity::Info, "native").payload(json!({"n": 1}))])
        .await
        .unwrap();
    let pool = raw(db).await;
    match db.backend {
        Backend::Postgres => {
            let types: Vec<(String, String)> = sqlx::query_as(
                "SELECT table_name::text || '.' || column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name NOT LIKE '\\_sqlx%' \
                 AND (column_name IN ('ts', 'open_time', 'expires_at', 'lease_until', 'updated_at', 'created_at', \
                 'period_start', 'period_end') OR column_name LIKE '%\\_at')",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            assert!(types.len() >= 15, "{types:?}");
            for (col, ty) in &types {
                assert_eq!(ty, "timestamp with time zone", "{col} is an instant");
            }
            let (when, fee, kind): (String, String, String) = sqlx::query_as(
                "SELECT to_char(f.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), pg_typeof(f.fee)::text || ' ' || \
                 f.fee::text, jsonb_typeof(e.payload) FROM fills f, events e WHERE f.trade_id = 't-native'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(when, t.format("%Y-%m-%d %H:%M:%S").to_string());
            assert_eq!(fee, "numeric 0.000000012345678901");
            assert_eq!(kind, "object");
        }
        Backend::Sqlite => {
            let (ms, fee): (i64, String) =
                sqlx::query_as("SELECT ts, fee FROM fills WHERE trade_id = 't-native'").fetch_one(&pool).await.unwrap();
            assert_eq!(ms, t.timestamp_millis());
            assert_eq!(fee, "0.000000012345678901");
        }
    }
    pool.close().await;
}

// ---------------------------------------------------------------------------------------------- connection

#[tokio::test]
async fn unreachable_postgres_is_unavailable_fast() {
    // A port that was just free: nothing listens, so the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let settings = PoolSettings { max_connections: 1, acquire_timeout: StdDuration::from_millis(300) };
    let url = format!("postgres://bot:hunter2@127.0.0.1:{port}/mcbot");
    let err = SqlStore::connect_with(&url, &settings).await.unwrap_err();
    let StoreError::Unavailable(msg) = err else { panic!("expected Unavailable, got {err}") };
    assert!(!msg.contains("hunter2"), "the password is redacted: {msg}");
    assert!(msg.contains(&port.to_string()), "the message names the server: {msg}");
}

#[tokio::test]
async fn unsupported_url_is_rejected() {
    let err = SqlStore::connect("mysql://root:pw@localhost/mcbot").await.unwrap_err();
    let StoreError::Unavailable(msg) = err else { panic!("expected Unavailable, got {err}") };
    assert!(msg.contains("unsupported database URL") && msg.contains("sqlite:") && !msg.contains(":pw@"), "{msg}");
}

#[tokio::test]
async fn embedded_default_creates_its_directory_in_wal_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("nested").join("data");
    let url = SqlStore::embedded_url(&data_dir);
    let store = SqlStore::open(&url).await.expect("open embedded store");
    store.ping().await.expect("ping");
    assert!(data_dir.join("mcbot.db").is_file());
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(&url).await.expect("raw connection");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&pool).await.expect("journal mode");
    assert_eq!(mode, "wal");
    pool.close().await;
    store.close().await;
}

/// A consumer never misses an event whose transaction commits after one with a higher id. Writers hold their
/// transaction open for a random moment after appending; a reader follows the log by cursor meanwhile. With ids
/// drawn at insert from a sequence, a slow writer's lower id would commit behind the reader's cursor and never be
/// read.
async fn a_reader_never_misses_an_event_committed_late(db: &TestStore) {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6 {
        let store = db.store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..25 {
                let mut uow = store.begin().await.unwrap();
                uow.append(ev(w * 100 + i, EventKind::Signal, Severity::Info));
                uow.append(ev(w * 100 + i, EventKind::Signal, Severity::Info));
                let pause = std::hash::RandomState::new().build_hasher().finish() % 4_000;
                tokio::time::sleep(StdDuration::from_micros(pause)).await;
                uow.commit().await.unwrap();
            }
        }));
    }
    let reader = {
        let store = db.store.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cursor = 0;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let batch = store.read_events(&EventQuery { after: cursor, ..Default::default() }).await.unwrap();
                if let Some(last) = batch.last() {
                    cursor = last.id;
                }
                seen.extend(batch.into_iter().map(|e| e.id));
                if finished {
                    return seen;
                }
                tokio::time::sleep(StdDuration::from_micros(300)).await;
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    assert_eq!(seen, (1..=300).collect::<Vec<i64>>(), "every event read once, in order, none skipped");
}
