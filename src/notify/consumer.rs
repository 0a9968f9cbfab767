//! The notification consumer: reads the event log by its cursor and records one delivery per (event, channel)
//! in the outbox, applying the fatigue rules as it goes. It sends nothing itself, so handling a batch costs a few
//! inserts and a slow channel never holds the log back; the delivery worker sends.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use mcbot_schedules::EventHandler;
use mcbot_stages::ports::{
    BotState, Channel, DeliveryStatus, DeliveryStore, Event, EventKind, FollowUp, Message, NewDelivery, NewEvent,
    Route, Severity, Store, StoreError, TradingMode,
};

use super::route::{ChannelRule, Routing, clearable, clears, fatigue_key, render};

/// Per-order warnings that are held back while safe mode or a kill is on, so the one critical message stands out.
const PER_ORDER: [EventKind; 3] = [EventKind::OrderRejected, EventKind::OrderNotPlaced, EventKind::OrderCanceled];

/// True for an event that safe mode or a kill holds back: a per-order warning (or anything milder).
fn held_back_kind(ev: &NewEvent) -> bool {
    PER_ORDER.contains(&ev.kind) && ev.severity <= Severity::Warning
}

/// The fatigue rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fatigue {
    /// A repeat of the same condition within this time of the last message about it is suppressed and counted.
    pub cooldown: Duration,
}

impl Default for Fatigue {
    fn default() -> Self {
        Self { cooldown: Duration::minutes(10) }
    }
}

/// Turns events into delivery rows.
pub struct NotificationConsumer {
    name: String,
    outbox: Arc<dyn DeliveryStore>,
    state: Option<Arc<dyn Store>>,
    routing: Routing,
    channels: Vec<ChannelRule>,
    fatigue: Fatigue,
    wake: Arc<tokio::sync::Notify>,
    /// The mutes as last read (every one, expired or not): a mute is stored in the same transaction as its
    /// `notifications_muted` event, so they change only where the log says so.
    mutes: std::sync::Mutex<Option<Mutes>>,
}

/// Muted kinds (or `all`) with the time each mute ends.
type Mutes = Vec<(String, DateTime<Utc>)>;

impl NotificationConsumer {
    /// A consumer named `name` (its cursor) writing to `outbox` for `channels`. With `state`, per-order warnings
    /// are inhibited while safe mode or a kill is on.
    pub fn new(
        name: impl Into<String>,
        outbox: Arc<dyn DeliveryStore>,
        state: Option<Arc<dyn Store>>,
        routing: Routing,
        channels: Vec<ChannelRule>,
        fatigue: Fatigue,
    ) -> Self {
        Self {
            name: name.into(),
            outbox,
            state,
            routing,
            channels,
            fatigue,
            wake: Arc::new(tokio::sync::Notify::new()),
            mutes: std::sync::Mutex::new(None),
        }
    }

    /// Notified after rows were recorded, so a worker in the same process sends at once instead of polling.
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// Records the deliveries of `events` (oldest first).
    pub async fn record(&self, events: &[Event]) -> Result<usize, StoreError> {
        // The trading state decides only whether per-order warnings are held back: read it when the batch has one,
        // not on every cycle.
        let state = match &self.state {
            Some(s) if events.iter().any(|e| held_back_kind(&e.event)) => Some(s.load_state().await?),
            _ => None,
        };
        // Rows are written in one batch, flushed early only before a lookup that must see them (fatigue,
        // resolution): a cycle's fills cost one write, not one each.
        let mut rows = Vec::new();
        let mut added = 0;
        // Mutes are looked at once per batch, and only when something in it is a message at all.
        let mut mutes = None;
        for e in events {
            if mutes.is_none() && self.routing.route(e.event.kind, e.event.severity).is_some() {
                mutes = Some(self.current_mutes(events).await?);
            }
            let m = mutes.as_deref().unwrap_or_default();
            added += self.record_one(e, events, state.as_ref(), m, &mut rows).await?;
        }
        if !rows.is_empty() {
            added += self.outbox.enqueue(std::mem::take(&mut rows)).await?;
        }
        if added > 0 {
            self.wake.notify_waiters();
            self.wake.notify_one();
        }
        Ok(added)
    }

    /// The mutes for a batch: as last read, unless the batch carries a mute event (or none were read yet).
    async fn current_mutes(&self, batch: &[Event]) -> Result<Mutes, StoreError> {
        let muting = batch.iter().any(|e| e.event.kind == EventKind::NotificationsMuted);
        let cached = self.mutes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(all) = cached.filter(|_| !muting) {
            return Ok(all);
        }
        let all = self.outbox.mutes(DateTime::<Utc>::MIN_UTC).await?;
        *self.mutes.lock().unwrap_or_else(|p| p.into_inner()) = Some(all.clone());
        Ok(all)
    }

    async fn record_one(
        &self,
        e: &Event,
        batch: &[Event],
        state: Option<&BotState>,
        mutes: &[(String, DateTime<Utc>)],
        queued: &mut Vec<NewDelivery>,
    ) -> Result<usize, StoreError> {
        let ev = &e.event;
        let routed = self.routing.route(ev.kind, ev.severity);
        let clearing = clears(ev.kind).is_some();
        if routed.is_none() && !clearing {
            return Ok(0);
        }
        let key = fatigue_key(e);
        let inhibited = state.is_some_and(|s| s.safe_mode || s.trading == TradingMode::Halted) && held_back_kind(ev);
        // A person muted this kind (or everything) for a while; critical and worse are never muted.
        let muted = (ev.severity < Severity::Critical)
            .then(|| mutes.iter().filter(|(k, until)| (k == "all" || k == ev.kind.as_str()) && *until > ev.ts))
            .and_then(|mut m| m.next().map(|(_, until)| *until));
        let looks_back = clearing || (routed == Some(Route::Alerts) && ev.severity >= Severity::Warning);
        let mut flushed = 0;
        // The lookups read rows of this key only: queued rows of other keys need not be written first.
        if looks_back && queued.iter().any(|r| r.fatigue_key.as_deref() == Some(key.as_str())) {
            flushed = self.outbox.enqueue(std::mem::take(queued)).await?;
        }
        let mut rows = Vec::new();
        let report = (ev.kind == EventKind::ReportProduced).then(|| report_message(e)).flatten();
        let chart = match (&self.state, ev.kind, &report) {
            (Some(store), EventKind::ReportProduced, None) => report_chart(store.as_ref(), e).await,
            _ => None,
        };
        for rule in &self.channels {
            let mut message = render(e, batch);
            message.image_png = chart.clone();
            if let Some((title, fields, charts)) = &report {
                message.title = title.clone();
                message.fields = fields.clone();
                // The log shows no pictures: its rows need not carry them.
                if rule.channel != Channel::Log {
                    message.charts = charts.clone();
                }
            }
            let mut status = DeliveryStatus::Pending;
            let mut note = None;
            let mut resolves = false;
            let mut route = routed;
            if clearing {
                // A cleared condition is news only where its raise was reported: "resolved after 12 min".
                match self.outbox.active_since(rule.channel, &key).await? {
                    Some(since) => {
                        resolves = true;
                        route = Some(route.unwrap_or(Route::Alerts));
                        message.body.push_str(&format!("\nresolved after {}", span(ev.ts - since)));
                        message.title = format!("resolved: {}", message.title);
                    }
                    None if route.is_none() => continue,
                    None => {}
                }
            }
            let Some(route) = route else { continue };
            if !resolves && !rule.carries(route, ev.severity) {
                continue;
            }
            let fatigued = route == Route::Alerts && ev.severity >= Severity::Warning && !resolves;
            if inhibited {
                status = DeliveryStatus::Suppressed;
                note = Some("held back while safe mode or a kill is on".to_owned());
            } else if let Some(until) = muted.filter(|_| !resolves) {
                status = DeliveryStatus::Suppressed;
                note = Some(format!("muted until {}", until.format("%Y-%m-%d %H:%M UTC")));
            } else if fatigued && let Some(last) = self.outbox.last_unsuppressed(rule.channel, &key).await? {
                if !last.new.resolves && ev.ts - last.new.created_at < self.fatigue.cooldown {
                    status = DeliveryStatus::Suppressed;
                    note = Some(format!("repeat within the cooldown of delivery {}", last.id));
                } else {
                    let (n, first) = self.outbox.suppressed_after(rule.channel, &key, last.id).await?;
                    if let (true, Some(first)) = (n > 0, first) {
                        append_count(&mut message, n, first);
                    }
                }
            }
            let follow_up = (status == DeliveryStatus::Pending && route == Route::Alerts && !resolves)
                .then(|| follow_up_of(ev.kind, ev.severity))
                .flatten();
            rows.push(NewDelivery {
                event_id: e.id,
                occurrence: 0,
                channel: rule.channel,
                route,
                status,
                fatigue_key: Some(key.clone()),
                resolves,
                note,
                message,
                created_at: ev.ts,
                follow_up,
            });
        }
        queued.extend(rows);
        Ok(flushed)
    }
}

/// A report message's title, headline figures and charts.
type ReportParts = (String, Vec<(String, String)>, Vec<mcbot_stages::ports::ChartImage>);

/// A report event's title, headline figures and charts, drawn from the report its payload carries; `None` for an
/// event without one (older releases), which gets [`report_chart`].
fn report_message(e: &Event) -> Option<ReportParts> {
    let p = &e.event.payload;
    let report: mcbot_schedules::reports::Report = serde_json::from_value(p.get("report")?.clone()).ok()?;
    let quote = p.get("quote").and_then(|q| q.as_str()).unwrap_or_default();
    let title = mcbot_schedules::reports::text::title(&report);
    let fields = mcbot_schedules::reports::text::headline(&report, quote);
    Some((title, fields, crate::reports::charts::all(&report)))
}

/// What follows a message later: an emergency repeats until acknowledged (except a kill, which a person issued
/// and so knows of), a warning about a condition that can clear escalates if it is still active after a while.
fn follow_up_of(kind: EventKind, severity: Severity) -> Option<FollowUp> {
    match severity {
        Severity::Emergency if kind != EventKind::TradingKilled => Some(FollowUp::Repeat),
        Severity::Warning if clearable(kind) => Some(FollowUp::Escalate),
        _ => None,
    }
}

/// The equity and drawdown chart of a report's period, as PNG bytes; `None` when there is nothing to draw or the
/// chart cannot be made (the report is still sent, as text).
async fn report_chart(store: &dyn Store, e: &Event) -> Option<Vec<u8>> {
    let p = &e.event.payload;
    let time = |k: &str| p.get(k).and_then(|v| serde_json::from_value::<DateTime<Utc>>(v.clone()).ok());
    let (start, end) = (time("start")?, time("end")?);
    let snaps = store.equity_between(start, end).await.ok()?;
    if snaps.len() < 2 {
        return None;
    }
    let t: Vec<i64> = snaps.iter().map(|s| s.ts.timestamp()).collect();
    let eq: Vec<f64> =
        snaps.iter().map(|s| rust_decimal::prelude::ToPrimitive::to_f64(&s.equity).unwrap_or(0.0)).collect();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let path = std::env::temp_dir().join(format!("mcbot-report-{}-{}-{nanos}.png", std::process::id(), e.id));
    let title = format!("equity {} – {}", start.format("%Y-%m-%d"), end.format("%Y-%m-%d"));
    let drawn = crate::commands::backtest::chart::equity_drawdown(&path, &t, &eq, &title);
    let bytes = drawn.ok().and_then(|()| std::fs::read(&path).ok());
    let _ = std::fs::remove_file(&path);
    bytes
}

/// "×37 since 12:05": how often the condition repeated unreported since the last message about it.
fn append_count(m: &mut Message, n: i64, first: DateTime<Utc>) {
    m.body.push_str(&format!("\n×{n} since {}", first.format("%H:%M")));
}

/// "12 min", "2 h 5 min", "40 s".
fn span(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

#[async_trait]
impl EventHandler for NotificationConsumer {
    fn name(&self) -> &str {
        &self.name
    }

    async fn handle(&self, events: &[Event]) -> Result<(), String> {
        self.record(events).await.map(|_| ()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use mcbot_stages::domain::Symbol;
    use mcbot_stages::ports::{Channel, DeliveryStore, NewEvent};

    use super::*;
    use crate::notify::memory::MemoryOutbox;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-02T12:05:00Z").map(|t| t.to_utc()).unwrap_or_default()
    }

    fn all_routes(channel: Channel) -> ChannelRule {
        ChannelRule { channel, routes: vec![Route::Trades, Route::Alerts, Route::Reports], alert_min: Severity::Info }
    }

    fn consumer(outbox: Arc<MemoryOutbox>) -> NotificationConsumer {
        NotificationConsumer::new(
            "notify",
            outbox,
            None,
            Routing::default(),
            vec![all_routes(Channel::Telegram), all_routes(Channel::Log)],
            Fatigue::default(),
        )
    }

    fn ev(id: i64, secs: i64, kind: EventKind, sev: Severity, key: &str) -> Event {
        let e = NewEvent::new(t0() + Duration::seconds(secs), kind, sev, format!("{kind} {id}")).dedup(key);
        Event { id, event: e }
    }

    #[tokio::test]
    async fn one_row_per_event_and_channel_and_none_twice() {
        let outbox = Arc::new(MemoryOutbox::new());
        let c = consumer(outbox.clone());
        let sym = Symbol::new("BTCUSDT").unwrap();
        let fill =
            Event { id: 1, event: NewEvent::new(t0(), EventKind::OrderFilled, Severity::Info, "filled").symbol(&sym) };
        let signal = Event { id: 2, event: NewEvent::new(t0(), EventKind::Signal, Severity::Info, "signal") };
        assert_eq!(c.record(&[fill.clone(), signal.clone()]).await.unwrap(), 2);
        assert_eq!(c.record(&[fill, signal]).await.unwrap(), 0, "a batch handed over again records nothing new");
        let rows = outbox.all();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.new.event_id == 1 && r.new.route == Route::Trades));
    }

    #[tokio::test]
    async fn a_hundred_identical_alerts_are_one_message_and_the_next_carries_the_count() {
        let outbox = Arc::new(MemoryOutbox::new());
        let c = consumer(outbox.clone());
        let burst: Vec<Event> =
            (1..=100).map(|i| ev(i, i / 2, EventKind::StaleData, Severity::Warning, "stale:BTCUSDT")).collect();
        c.record(&burst).await.unwrap();
        let tg: Vec<_> = outbox.all().into_iter().filter(|d| d.new.channel == Channel::Telegram).collect();
        let pending: Vec<_> = tg.iter().filter(|d| d.status() == DeliveryStatus::Pending).collect();
        assert_eq!(pending.len(), 1, "one message for the burst");
        assert_eq!(tg.iter().filter(|d| d.status() == DeliveryStatus::Suppressed).count(), 99);
        // After the cooldown the same condition is reported again, with the count of what was held back.
        let later = ev(101, 20 * 60, EventKind::StaleData, Severity::Warning, "stale:BTCUSDT");
        c.record(&[later]).await.unwrap();
        let last = outbox.all().into_iter().rfind(|d| d.new.channel == Channel::Telegram).unwrap();
        assert_eq!(last.status(), DeliveryStatus::Pending);
        assert!(last.new.message.body.ends_with("×99 since 12:05"), "{}", last.new.message.body);
    }

    #[tokio::test]
    async fn a_cleared_condition_sends_one_resolved_message() {
        let outbox = Arc::new(MemoryOutbox::new());
        let c = consumer(outbox.clone());
        c.record(&[ev(1, 0, EventKind::StaleData, Severity::Warning, "stale:ETHUSDT")]).await.unwrap();
        c.record(&[ev(2, 12 * 60, EventKind::DataRecovered, Severity::Info, "stale:ETHUSDT")]).await.unwrap();
        let resolved: Vec<_> =
            outbox.all().into_iter().filter(|d| d.new.resolves && d.new.channel == Channel::Telegram).collect();
        assert_eq!(resolved.len(), 1);
        assert!(resolved[0].new.message.body.ends_with("resolved after 12 min"), "{:?}", resolved[0].new.message);
        // A second recovery of a condition no longer active says nothing.
        c.record(&[ev(3, 13 * 60, EventKind::DataRecovered, Severity::Info, "stale:ETHUSDT")]).await.unwrap();
        assert_eq!(outbox.all().iter().filter(|d| d.new.resolves).count(), 2, "one per channel, not more");
        // A recovery of something never reported is not news either.
        c.record(&[ev(4, 14 * 60, EventKind::DataRecovered, Severity::Info, "stale:XRPUSDT")]).await.unwrap();
        assert_eq!(outbox.all().len(), 4);
    }

    #[tokio::test]
    async fn emergencies_repeat_clearable_warnings_escalate_and_nothing_else_follows_up() {
        let outbox = Arc::new(MemoryOutbox::new());
        let c = consumer(outbox.clone());
        c.record(&[
            ev(1, 0, EventKind::OrderOutcomeUnknown, Severity::Emergency, "unknown:BTCUSDT"),
            ev(2, 0, EventKind::TradingKilled, Severity::Emergency, "killed"),
            ev(3, 0, EventKind::StaleData, Severity::Warning, "stale:BTCUSDT"),
            ev(4, 0, EventKind::JobFailed, Severity::Warning, "job:report"),
            ev(5, 1, EventKind::StaleData, Severity::Warning, "stale:BTCUSDT"),
        ])
        .await
        .unwrap();
        let tg: Vec<(i64, Option<FollowUp>)> = outbox
            .all()
            .into_iter()
            .filter(|d| d.new.channel == Channel::Telegram)
            .map(|d| (d.new.event_id, d.new.follow_up))
            .collect();
        assert_eq!(
            tg,
            [
                (1, Some(FollowUp::Repeat)),
                (2, None),
                (3, Some(FollowUp::Escalate)),
                (4, None),
                (5, None), // suppressed repeat: the first message carries the follow-up
            ]
        );
    }

    #[tokio::test]
    async fn a_muted_kind_is_suppressed_until_its_time_but_a_critical_one_never() {
        let outbox = Arc::new(MemoryOutbox::new());
        let c = consumer(outbox.clone());
        let muted = NewEvent::new(t0(), EventKind::NotificationsMuted, Severity::Info, "muted");
        outbox.set_mute("stale_data", t0() + Duration::hours(1), muted).await.unwrap();
        c.record(&[
            ev(1, 0, EventKind::StaleData, Severity::Warning, "stale:BTCUSDT"),
            ev(2, 0, EventKind::StaleData, Severity::Critical, "stale:ETHUSDT"),
            ev(3, 3600, EventKind::StaleData, Severity::Warning, "stale:XRPUSDT"),
        ])
        .await
        .unwrap();
        let tg: Vec<_> = outbox.all().into_iter().filter(|d| d.new.channel == Channel::Telegram).collect();
        assert_eq!(tg[0].status(), DeliveryStatus::Suppressed);
        assert!(tg[0].new.note.as_deref().is_some_and(|n| n.starts_with("muted until")), "{:?}", tg[0].new.note);
        assert_eq!(tg[1].status(), DeliveryStatus::Pending, "critical is never muted");
        assert_eq!(tg[2].status(), DeliveryStatus::Pending, "the mute is over");
    }

    /// The mutes are read again when the log says one changed, whatever the time between.
    #[tokio::test]
    async fn a_mute_applies_from_its_event_on() {
        let outbox = Arc::new(MemoryOutbox::new());
        let c = consumer(outbox.clone());
        let warn = |id, secs| ev(id, secs, EventKind::StaleData, Severity::Warning, &format!("stale:{id}"));
        let status = |id: i64| {
            let all = outbox.all();
            let d = all.iter().find(|d| d.new.event_id == id && d.new.channel == Channel::Telegram).cloned();
            d.map(|d| (d.status(), d.new.note.is_some_and(|n| n.starts_with("muted until"))))
        };
        c.record(&[warn(1, 0)]).await.unwrap();
        assert_eq!(status(1), Some((DeliveryStatus::Pending, false)));
        let muted = |secs| {
            NewEvent::new(t0() + Duration::seconds(secs), EventKind::NotificationsMuted, Severity::Info, "muted")
        };
        outbox.set_mute("stale_data", t0() + Duration::hours(1), muted(1)).await.unwrap();
        c.record(&[Event { id: 2, event: muted(1) }, warn(3, 2)]).await.unwrap();
        assert_eq!(status(3), Some((DeliveryStatus::Suppressed, true)));
        // An hour of quiet later the mute is over by its time; unmuted early, it is over from that event on.
        c.record(&[warn(4, 1800)]).await.unwrap();
        assert_eq!(status(4), Some((DeliveryStatus::Suppressed, true)));
        outbox.set_mute("stale_data", t0(), muted(1900)).await.unwrap();
        c.record(&[Event { id: 5, event: muted(1900) }, warn(6, 1901)]).await.unwrap();
        assert_eq!(status(6), Some((DeliveryStatus::Pending, false)), "unmuted");
    }

    #[test]
    fn spans_read_plainly() {
        assert_eq!(span(Duration::seconds(40)), "40 s");
        assert_eq!(span(Duration::minutes(12)), "12 min");
        assert_eq!(span(Duration::minutes(125)), "2 h 5 min");
    }
}
