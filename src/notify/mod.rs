//! Notifications that are never lost. The notification consumer reads the event log by its cursor and records
//! one delivery per (event, channel) in the outbox; the delivery worker sends them through the channel adapters
//! (Telegram, Discord, email, the log) with retries and back-off, off the trading path. A crash, a restart or a
//! channel outage leaves pending rows that are sent afterwards.

pub mod chat;
pub mod consumer;
pub mod discord;
pub mod email;
pub mod lifecycle;
pub mod memory;
pub mod profit;
pub mod route;
pub mod secrets;
pub mod setup;
pub mod telegram;
pub mod worker;

use std::sync::Arc;

use async_trait::async_trait;
use mcbot_schedules::EventHandler;
use mcbot_stages::ports::{Alert, Channel, ChannelNotifier, Event, Message, Notifier, NotifyError, Route, Severity};

pub use consumer::{Fatigue, NotificationConsumer};
pub use memory::MemoryOutbox;
pub use route::{ChannelRule, Routing};
pub use worker::{DeliveryWorker, FollowUpRules, RetryPolicy};

/// The log as a channel: always on, so a bot without any chat configured still reports, and the fallback when
/// another channel keeps failing.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogChannel;

#[async_trait]
impl ChannelNotifier for LogChannel {
    fn channel(&self) -> Channel {
        Channel::Log
    }

    async fn deliver(&self, route: Route, m: &Message) -> Result<(), NotifyError> {
        let fields: Vec<String> = m.fields.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let route = route.as_str();
        match m.severity {
            Severity::Info => {
                tracing::info!(target: "mcbot::alert", route, title = %m.title, fields = %fields.join(", "), "{}", m.body)
            }
            Severity::Warning => {
                tracing::warn!(target: "mcbot::alert", route, title = %m.title, fields = %fields.join(", "), "{}", m.body)
            }
            Severity::Critical | Severity::Emergency => {
                tracing::error!(target: "mcbot::alert", route, title = %m.title, fields = %fields.join(", "), "{}", m.body)
            }
        }
        Ok(())
    }
}

/// Writes alerts to the tracing log at a level matching their severity.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        match alert.severity {
            Severity::Info => tracing::info!(target: "mcbot::alert", title = %alert.title, "{}", alert.body),
            Severity::Warning => tracing::warn!(target: "mcbot::alert", title = %alert.title, "{}", alert.body),
            Severity::Critical | Severity::Emergency => {
                tracing::error!(target: "mcbot::alert", title = %alert.title, "{}", alert.body)
            }
        }
        Ok(())
    }
}

/// Turns events of at least warning severity (and every report) into alerts for one plain notifier (kept for
/// sinks that need no outbox).
pub struct AlertConsumer {
    name: String,
    notifier: Arc<dyn Notifier>,
}

impl AlertConsumer {
    /// A consumer named `name` (its cursor key) delivering to `notifier`.
    pub fn new(name: impl Into<String>, notifier: Arc<dyn Notifier>) -> Self {
        Self { name: name.into(), notifier }
    }
}

#[async_trait]
impl EventHandler for AlertConsumer {
    fn name(&self) -> &str {
        &self.name
    }

    async fn handle(&self, events: &[Event]) -> Result<(), String> {
        use mcbot_stages::ports::EventKind;
        for e in events {
            let ev = &e.event;
            if ev.severity < Severity::Warning && ev.kind != EventKind::ReportProduced {
                continue;
            }
            let alert = Alert {
                severity: ev.severity,
                title: format!("[{}] {}", ev.severity.as_str(), ev.kind),
                body: ev.message.clone(),
                image_png: None,
            };
            self.notifier.notify(&alert).await.map_err(|err| format!("event {}: {err}", e.id))?;
        }
        Ok(())
    }
}
