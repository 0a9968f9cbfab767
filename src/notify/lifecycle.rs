//! The process's life in messages. The start says which configuration runs (a hash of it, secrets left out) and
//! how the previous run ended; the stop says how long it ran and where the books stand; a panic records a
//! `crashed` event and tries to send it at once through the configured channels, with a short time-out, before
//! the process dies. What the direct send delivered is recorded as sent, so the next start does not send it
//! again; what it could not deliver the next start's consumer sends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, NaiveTime, Utc};
use mcbot_stages::SystemClock;
use mcbot_stages::ports::{
    DeliveryStatus, DeliveryStore, Event, EventKind, NewDelivery, NewEvent, Route, Severity, Store, StoreError,
};
use rust_decimal::Decimal;
use sha2::Digest;

use super::route::{fatigue_key, render};
use super::setup;
use crate::config::{Config, NotifyConfig};
use crate::store::SqlStore;

/// A short, stable fingerprint of the effective configuration: the first 12 hex digits of the SHA-256 of its
/// JSON form with every secret left out, so two runs with the same settings show the same hash and a token
/// rotation does not look like a configuration change.
pub fn config_hash(cfg: &Config) -> String {
    fn strip(v: &mut serde_json::Value, path: &str) {
        if let serde_json::Value::Object(map) = v {
            for (k, child) in map.iter_mut() {
                let key = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                if crate::config::keys::is_secret(&key) {
                    *child = serde_json::Value::Null;
                } else {
                    strip(child, &key);
                }
            }
        }
    }
    let mut v = serde_json::to_value(cfg).unwrap_or_default();
    strip(&mut v, "");
    let digest = sha2::Sha256::digest(v.to_string().as_bytes());
    hex::encode(&digest[..6])
}

/// How the previous run ended, read from the last lifecycle event before this start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviousRun {
    /// No run before this one.
    None,
    /// It recorded its stop.
    Clean,
    /// It started (at this time) and never recorded a stop or a crash: killed, or the machine went away.
    Unclean(DateTime<Utc>),
    /// Its panic hook recorded the crash (this message).
    Crashed(String),
}

impl PreviousRun {
    /// From the last of the `started`, `stopped` and `crashed` events.
    pub fn from_last(last: Option<&Event>) -> Self {
        match last.map(|e| (e.event.kind, e)) {
            None => PreviousRun::None,
            Some((EventKind::Started, e)) => PreviousRun::Unclean(e.event.ts),
            Some((EventKind::Crashed, e)) => PreviousRun::Crashed(e.event.message.clone()),
            Some(_) => PreviousRun::Clean,
        }
    }

    /// One line for the start message.
    pub fn line(&self) -> String {
        match self {
            PreviousRun::None => "first start on this database".to_owned(),
            PreviousRun::Clean => "the previous run stopped cleanly".to_owned(),
            PreviousRun::Unclean(t) => {
                format!("the previous run (started {}) ended without stopping cleanly", t.format("%Y-%m-%d %H:%M UTC"))
            }
            PreviousRun::Crashed(m) => format!("the previous run crashed: {}", m.lines().next().unwrap_or_default()),
        }
    }
}

/// Today's P&L: the newest equity less the equity at the start of the UTC day (the last snapshot before it,
/// else the first of the day). `None` without snapshots.
pub async fn day_pnl(store: &dyn Store, now: DateTime<Utc>) -> Result<Option<Decimal>, StoreError> {
    let day = now.date_naive().and_time(NaiveTime::MIN).and_utc();
    let Some(last) = store.equity_before(DateTime::<Utc>::MAX_UTC).await? else { return Ok(None) };
    let start = match store.equity_before(day).await? {
        Some(s) => Some(s.equity),
        None => store.equity_between(day, DateTime::<Utc>::MAX_UTC).await?.first().map(|s| s.equity),
    };
    Ok(start.map(|s| last.equity - s))
}

/// What a crash report needs: where the database is and how to reach people.
#[derive(Clone)]
pub struct CrashReport {
    db_url: String,
    notify: NotifyConfig,
    timeout: std::time::Duration,
}

impl CrashReport {
    /// A report to the database at `db_url` and the channels of `notify`, given up after `timeout`.
    pub fn new(db_url: impl Into<String>, notify: NotifyConfig, timeout: std::time::Duration) -> Self {
        Self { db_url: db_url.into(), notify, timeout }
    }

    /// Records a `crashed` event with `message` and sends it straight to every channel that carries critical
    /// alerts, each attempt bounded by the time-out; the deliveries that went out are recorded as sent. Returns
    /// the channels that delivered it.
    pub async fn send(&self, message: &str, now: DateTime<Utc>) -> Result<Vec<String>, String> {
        let store = SqlStore::connect(&self.db_url).await.map_err(|e| e.to_string())?;
        let e = NewEvent::new(now, EventKind::Crashed, Severity::Critical, message).dedup("crashed");
        let ids = store.append_events(vec![e.clone()]).await.map_err(|e| e.to_string())?;
        let Some(id) = ids.first().copied() else { return Err("the crash event was not recorded".into()) };
        let event = Event { id, event: e };
        let rules = setup::channel_rules(&self.notify);
        let notifiers = setup::notifiers(&self.notify, Arc::new(SystemClock), None).map_err(|e| e.to_string())?;
        let mut delivered = Vec::new();
        let mut rows = Vec::new();
        for n in notifiers {
            let carries =
                rules.iter().any(|r| r.channel == n.channel() && r.carries(Route::Alerts, Severity::Critical));
            if !carries {
                continue;
            }
            let message = render(&event, std::slice::from_ref(&event));
            let sent = tokio::time::timeout(self.timeout, n.deliver(Route::Alerts, &message)).await;
            if matches!(sent, Ok(Ok(()))) {
                delivered.push(n.channel().as_str().to_owned());
                rows.push(NewDelivery {
                    event_id: id,
                    occurrence: 0,
                    channel: n.channel(),
                    route: Route::Alerts,
                    status: DeliveryStatus::Sent,
                    fatigue_key: Some(fatigue_key(&event)),
                    resolves: false,
                    note: Some("sent directly by the panic hook".into()),
                    message,
                    created_at: now,
                    follow_up: None,
                });
            }
        }
        store.enqueue(rows).await.map_err(|e| e.to_string())?;
        Ok(delivered)
    }
}

/// Set while a crash is being reported, so a panic inside the report does not report itself.
static REPORTING: AtomicBool = AtomicBool::new(false);

/// Installs a panic hook that reports the panic (see [`CrashReport::send`]) on a thread of its own, waits for it
/// at most the report's time-out (plus a second to connect), then runs the hook that was there before.
pub fn install_panic_hook(report: CrashReport) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !REPORTING.swap(true, Ordering::SeqCst) {
            let payload = info.payload();
            let what = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
            let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            let message = format!("mcbot panicked in thread {thread}{place}: {what}");
            let report = report.clone();
            let limit = report.timeout + std::time::Duration::from_secs(1);
            let (tx, rx) = std::sync::mpsc::channel();
            let worker = std::thread::Builder::new().name("crash-report".into()).spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
                let outcome = match rt {
                    Ok(rt) => rt.block_on(async {
                        tokio::time::timeout(limit, report.send(&message, Utc::now()))
                            .await
                            .unwrap_or_else(|_| Err("timed out".into()))
                    }),
                    Err(e) => Err(e.to_string()),
                };
                let _ = tx.send(outcome);
            });
            if worker.is_ok() {
                match rx.recv_timeout(limit + std::time::Duration::from_secs(1)) {
                    Ok(Ok(channels)) => eprintln!("crash reported to: {}", channels.join(", ")),
                    Ok(Err(e)) => eprintln!("crash not reported: {e}"),
                    Err(_) => eprintln!("crash not reported: timed out"),
                }
            }
            REPORTING.store(false, Ordering::SeqCst);
        }
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TelegramConfig;

    #[test]
    fn the_config_hash_follows_settings_but_not_secrets() {
        let mut a = Config::default();
        a.notify.telegram =
            Some(TelegramConfig { token: Some("1:first".into()), chat_ids: vec![1], api_url: "http://x".into() });
        let mut b = a.clone();
        if let Some(t) = b.notify.telegram.as_mut() {
            t.token = Some("2:rotated".into());
        }
        assert_eq!(config_hash(&a), config_hash(&b), "a rotated token is the same configuration");
        assert_eq!(config_hash(&a).len(), 12);
        b.notify.cooldown_secs += 1;
        assert_ne!(config_hash(&a), config_hash(&b), "a changed setting is another");
    }

    #[test]
    fn the_previous_run_reads_from_the_last_lifecycle_event() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let ev = |kind, msg: &str| Event { id: 1, event: NewEvent::new(t, kind, Severity::Info, msg) };
        assert_eq!(PreviousRun::from_last(None), PreviousRun::None);
        assert_eq!(PreviousRun::from_last(Some(&ev(EventKind::Stopped, "bye"))), PreviousRun::Clean);
        let unclean = PreviousRun::from_last(Some(&ev(EventKind::Started, "hi")));
        assert!(unclean.line().contains("ended without stopping cleanly"), "{}", unclean.line());
        let crashed = PreviousRun::from_last(Some(&ev(EventKind::Crashed, "mcbot panicked in thread x\nmore")));
        assert_eq!(crashed.line(), "the previous run crashed: mcbot panicked in thread x");
    }
}
