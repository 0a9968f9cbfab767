//! The health job raises a stale symbol once and clears it once, and prunes the event log to its retention.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use mcbot::store::Backend;
use mcbot_schedules::jobs::HealthJob;
use mcbot_schedules::{Job, JobContext};
use mcbot_stages::domain::RunId;
use mcbot_stages::ports::{EventKind, EventQuery, Exchange, NewEvent, Severity};
use mcbot_stages::{Clock, ManualClock};

use crate::support::venue::{Bot, sym, symbols, tf};

/// The health job on `bot`, allowing `max_stale_bars` bars of lag.
fn health(bot: &Bot, max_stale_bars: i32) -> HealthJob {
    let clock: Arc<dyn Clock> = bot.clock.clone();
    HealthJob::new(bot.store.clone(), bot.venue.clone(), clock, symbols(), tf(), max_stale_bars)
}

async fn run(job: &HealthJob, clock: &ManualClock) {
    let at = clock.now();
    let out = job.run(&JobContext::detached(RunId::new("health", at), at)).await.unwrap();
    assert!(!out.failed, "{}", out.summary);
}

/// Stores the venue's closed bars of every symbol up to `until`.
async fn store_bars(bot: &Bot, only: &[&str], until: DateTime<Utc>) {
    for s in only {
        let candles = bot.venue.closed_candles(&sym(s), tf(), until, 20).await.unwrap();
        assert!(!candles.is_empty());
        bot.store.save_candles(&sym(s), tf(), &candles).await.unwrap();
    }
}

async fn count(bot: &Bot, kind: EventKind, symbol: &str) -> usize {
    bot.events(kind).await.iter().filter(|e| e.event.symbol.as_ref().map(|s| s.as_str()) == Some(symbol)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_symbol_is_raised_once_and_cleared_once() {
    let bot = Bot::new(Backend::Sqlite).await;
    let job = health(&bot, 2);
    let hour = |h: i64| crate::support::venue::start() + Duration::hours(h);
    // All three symbols fresh at bar 20.
    bot.clock.set(hour(20) + Duration::seconds(5));
    store_bars(&bot, &["BTCUSDT", "ETHUSDT", "SOLUSDT"], bot.clock.now()).await;
    run(&job, &bot.clock).await;
    assert!(bot.events(EventKind::StaleData).await.is_empty());

    // Time moves on; BTC and ETH keep being stored, SOL's feed stops at bar 20.
    for h in 21..=30 {
        bot.clock.set(hour(h) + Duration::seconds(5));
        store_bars(&bot, &["BTCUSDT", "ETHUSDT"], bot.clock.now()).await;
        run(&job, &bot.clock).await;
        run(&job, &bot.clock).await;
    }
    assert_eq!(count(&bot, EventKind::StaleData, "SOLUSDT").await, 1, "raised once, not every run");
    assert_eq!(bot.events(EventKind::StaleData).await.len(), 1, "the fresh symbols raise nothing");
    let stale = &bot.events(EventKind::StaleData).await[0];
    assert_eq!(stale.event.severity, Severity::Warning);
    assert_eq!(stale.event.ts, hour(23) + Duration::seconds(5), "raised at the first run more than 2 bars behind");
    assert!(bot.store.load_state().await.unwrap().conditions.contains_key("stale_data:SOLUSDT"));

    // SOL's bars arrive again: cleared once.
    store_bars(&bot, &["SOLUSDT"], bot.clock.now()).await;
    for _ in 0..3 {
        run(&job, &bot.clock).await;
    }
    assert_eq!(count(&bot, EventKind::DataRecovered, "SOLUSDT").await, 1);
    assert_eq!(bot.events(EventKind::DataRecovered).await.len(), 1);
    assert_eq!(count(&bot, EventKind::StaleData, "SOLUSDT").await, 1);
    assert!(bot.store.load_state().await.unwrap().conditions.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_the_retention_are_pruned_by_a_health_run() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let bot = Bot::new(backend).await;
        store_bars(&bot, &["BTCUSDT", "ETHUSDT", "SOLUSDT"], bot.clock.now()).await;
        let now = bot.clock.now();
        let old =
            |days: i64, what: &str| NewEvent::new(now - Duration::days(days), EventKind::Started, Severity::Info, what);
        bot.store
            .append_events(vec![old(401, "older than 400 days"), old(399, "younger than 400 days"), old(40, "40 days")])
            .await
            .unwrap();
        let messages =
            |evs: Vec<mcbot_stages::ports::Event>| evs.into_iter().map(|e| e.event.message).collect::<Vec<_>>();
        let all = EventQuery::default();

        // The default retention: 400 days.
        run(&health(&bot, 2), &bot.clock).await;
        let kept = messages(bot.store.read_events(&all).await.unwrap());
        assert_eq!(kept, ["younger than 400 days", "40 days"], "{backend:?}");

        // A shorter one.
        run(&health(&bot, 2).with_event_retention(Duration::days(30)), &bot.clock).await;
        let kept = messages(bot.store.read_events(&all).await.unwrap());
        assert!(kept.is_empty(), "{backend:?}: {kept:?}");
    }
}

/// A fresh database before its first trading cycle holds no bars: the health job reports waiting for the first
/// bar, raises no stale-data event and records a healthy heartbeat. Once a cycle has run, a symbol without bars
/// is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_database_is_waiting_for_its_first_bar_not_stale() {
    let bot = Bot::new(Backend::Sqlite).await;
    let job = health(&bot, 2);
    let at = bot.clock.now();
    let out = job.run(&JobContext::detached(RunId::new("health", at), at)).await.unwrap();
    assert!(!out.failed && out.summary.contains("waiting for the first trading cycle"), "{}", out.summary);
    assert!(bot.events(EventKind::StaleData).await.is_empty());

    let mut state = bot.store.load_state().await.unwrap();
    state.last_bar = Some(at);
    let version = bot.store.load_state_versioned().await.unwrap().version;
    let mut uow = bot.store.begin().await.unwrap();
    uow.save_state(&state, version).await.unwrap();
    uow.commit().await.unwrap();
    let later = at + Duration::seconds(1);
    bot.clock.set(later);
    let out = job.run(&JobContext::detached(RunId::new("health", later), later)).await.unwrap();
    assert!(out.summary.starts_with("unhealthy"), "{}", out.summary);
    assert_eq!(bot.events(EventKind::StaleData).await.len(), 3, "every symbol without bars is stale now");
}

/// The execution monitor reads the last hour's fills against the price each order was sized at: a fill 50 bps
/// worse than its sizing price is critical, raised once however often the health job runs, and cleared once when
/// the hour has passed. The process monitor compares the process's real resident memory with its limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_and_process_monitors_raise_once_and_clear_once() {
    use mcbot_schedules::jobs::Monitors;
    use mcbot_stages::domain::{ClientOrderId, Fill, Order, OrderStatus, Side};
    use mcbot_stages::monitors::process::ProcessLimits;
    use mcbot_stages::pipeline::booking;
    use mcbot_stages::ports::OrderAck;
    use rust_decimal_macros::dec;

    let bot = Bot::new(Backend::Postgres).await;
    let at = crate::support::venue::start() + Duration::hours(20) + Duration::seconds(5);
    bot.clock.set(at);
    let id = ClientOrderId::derive(&RunId::new("trading-cycle", at), &sym("BTCUSDT"), "buy");
    let order = Order {
        client_order_id: id.clone(),
        run_id: "trading-cycle@t".into(),
        symbol: sym("BTCUSDT"),
        side: Side::Buy,
        qty: dec!(0.1),
        filled_qty: dec!(0),
        avg_price: None,
        status: OrderStatus::PendingNew,
        exchange_order_id: None,
        created_at: at,
        reason: "test".into(),
    };
    assert!(booking::record_pending(bot.store.as_ref(), None, &order, Some(dec!(100))).await.unwrap());
    let fill = Fill {
        trade_id: "t-1".into(),
        client_order_id: id,
        symbol: sym("BTCUSDT"),
        side: Side::Buy,
        qty: dec!(0.1),
        price: dec!(100.5),
        fee: dec!(0.01),
        ts: at + Duration::seconds(2),
    };
    let filled = Order { filled_qty: dec!(0.1), avg_price: Some(dec!(100.5)), status: OrderStatus::Filled, ..order };
    let ack = OrderAck { order: filled, fills: vec![fill] };
    booking::record_ack(bot.store.as_ref(), None, &ack, OrderStatus::PendingNew, at).await.unwrap();

    let monitors = Monitors {
        process: ProcessLimits { rss_bytes: 1024 * 1024, ..Default::default() },
        probe: Some(Arc::new(mcbot::metrics::process::ProcProbe)),
        ..Default::default()
    };
    let job = health(&bot, 1000).with_monitors(monitors);
    bot.clock.set(at + Duration::minutes(5));
    run(&job, &bot.clock).await;
    run(&job, &bot.clock).await;
    let alerts = bot.events(EventKind::MonitorAlert).await;
    let keys: Vec<_> = alerts.iter().map(|e| (e.event.dedup_key.clone().unwrap(), e.event.severity)).collect();
    assert_eq!(
        keys,
        [("monitor:slippage".to_owned(), Severity::Critical), ("monitor:memory".to_owned(), Severity::Warning)],
        "{alerts:#?}"
    );
    assert!(alerts[0].event.message.contains("50.0 bps"), "{}", alerts[0].event.message);

    // The fill leaves the one-hour window: slippage clears, once; memory keeps firing, silently.
    bot.clock.set(at + Duration::minutes(70));
    run(&job, &bot.clock).await;
    run(&job, &bot.clock).await;
    let cleared = bot.events(EventKind::MonitorCleared).await;
    assert_eq!(cleared.len(), 1, "{cleared:#?}");
    assert_eq!(cleared[0].event.dedup_key.as_deref(), Some("monitor:slippage"));
    assert_eq!(bot.events(EventKind::MonitorAlert).await.len(), 2);
}
