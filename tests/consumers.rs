//! Consumers of the event log: the alert consumer hands warnings (and reports) to its notifier, moves its cursor
//! only after a delivered batch, resumes where it stopped after a restart, and of two replicas one consumes.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcbot::notify::AlertConsumer;
use mcbot_schedules::{Consumer, Pumped};
use mcbot_stages::ManualClock;
use mcbot_stages::ports::{Alert, EventKind, NewEvent, Notifier, NotifyError, Severity, Store};

use mcbot::store::Backend;

use crate::support::db::test_store;

/// Records what it delivers; fails while `down` is set.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<String>>,
    down: Mutex<bool>,
}

#[async_trait]
impl Notifier for Recorder {
    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        if *self.down.lock().unwrap() {
            return Err(NotifyError::transient("channel down"));
        }
        self.sent.lock().unwrap().push(alert.body.clone());
        Ok(())
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().to_utc()
}

async fn alerts_are_delivered_once_in_order(backend: Backend) {
    let db = test_store(backend).await;
    let store: Arc<dyn Store> = Arc::new(db.store.clone());
    let clock = Arc::new(ManualClock::new(t0()));
    let recorder = Arc::new(Recorder::default());
    let consumer = |holder: &str| {
        let handler = Arc::new(AlertConsumer::new("alerts", recorder.clone()));
        Consumer::new(store.clone(), clock.clone(), handler, holder.to_owned())
    };
    let ev = |kind, sev, msg: &str| NewEvent::new(t0(), kind, sev, msg);
    store
        .append_events(vec![
            ev(EventKind::Signal, Severity::Info, "a signal is not an alert"),
            ev(EventKind::StaleData, Severity::Warning, "BTCUSDT stale"),
            ev(EventKind::SafeModeOn, Severity::Critical, "safe mode on"),
        ])
        .await
        .unwrap();
    *recorder.down.lock().unwrap() = true;
    assert_eq!(consumer("a").pump().await.unwrap(), Pumped::Handled(0), "nothing delivered while down");
    *recorder.down.lock().unwrap() = false;
    assert_eq!(consumer("a").pump().await.unwrap(), Pumped::Handled(3), "the failed batch comes again");
    assert_eq!(*recorder.sent.lock().unwrap(), ["BTCUSDT stale", "safe mode on"]);
    // Another replica cannot consume while a's lease runs; a restarted a resumes at its cursor.
    store.append_events(vec![ev(EventKind::ReportProduced, Severity::Info, "daily report")]).await.unwrap();
    assert_eq!(consumer("b").pump().await.unwrap(), Pumped::Leased);
    assert_eq!(consumer("a").pump().await.unwrap(), Pumped::Handled(1));
    assert_eq!(*recorder.sent.lock().unwrap(), ["BTCUSDT stale", "safe mode on", "daily report"]);
    assert_eq!(consumer("a").pump().await.unwrap(), Pumped::Handled(0), "nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_delivered_once_in_order_sqlite() {
    alerts_are_delivered_once_in_order(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_delivered_once_in_order_postgres() {
    alerts_are_delivered_once_in_order(Backend::Postgres).await;
}

/// Keeps every event it is handed.
#[derive(Default)]
struct Keeper(Mutex<Vec<mcbot_stages::ports::Event>>);

#[async_trait]
impl mcbot_schedules::EventHandler for Keeper {
    fn name(&self) -> &str {
        "keeper"
    }
    async fn handle(&self, events: &[mcbot_stages::ports::Event]) -> Result<(), String> {
        self.0.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}

/// Events this process commits are handed to its consumers as the store would read them back (message cleaned,
/// time at the backend's precision); events of another process between two of them are read from the store, so
/// the consumer sees the log in order with nothing missing.
async fn handed_events_are_the_log_and_a_gap_is_read_from_the_store(backend: Backend) {
    let db = test_store(backend).await;
    let store: Arc<dyn Store> = Arc::new(db.store.clone());
    let other = mcbot::store::SqlStore::open(&db.url).await.unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let keeper = Arc::new(Keeper::default());
    let consumer = Consumer::new(store.clone(), clock.clone(), keeper.clone(), "a".into());
    let odd = t0() + chrono::Duration::nanoseconds(123_456_789);
    let ev = |msg: &str| {
        NewEvent::new(odd, EventKind::Signal, Severity::Info, msg).payload(serde_json::json!({"qty": "0.10"}))
    };
    store.append_events(vec![ev("mine\0one"), ev("mine two")]).await.unwrap();
    assert_eq!(consumer.pump().await.unwrap(), Pumped::Handled(2));
    other.append_events(vec![ev("another process")]).await.unwrap();
    store.append_events(vec![ev("mine three")]).await.unwrap();
    assert_eq!(consumer.pump().await.unwrap(), Pumped::Handled(2));
    let log = store.read_events(&mcbot_stages::ports::EventQuery::default()).await.unwrap();
    assert_eq!(log.len(), 4);
    assert_eq!(*keeper.0.lock().unwrap(), log, "handled exactly the log, in order, as stored");
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_events_are_the_log_and_a_gap_is_read_from_the_store_sqlite() {
    handed_events_are_the_log_and_a_gap_is_read_from_the_store(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_events_are_the_log_and_a_gap_is_read_from_the_store_postgres() {
    handed_events_are_the_log_and_a_gap_is_read_from_the_store(Backend::Postgres).await;
}
