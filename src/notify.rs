//! Notifiers and the alert consumer. Until the Telegram/Discord/email channels land, alerts and reports go to
//! the log, where they are still seen, searchable and collected. Alerts are read from the event log by a
//! consumer, never sent inline from the trading path.

use std::sync::Arc;

use async_trait::async_trait;
use mcbot_schedules::EventHandler;
use mcbot_stages::ports::{Alert, Event, Notifier, NotifyError, Severity};

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

/// Turns events of at least warning severity (and every report) into alerts for one notifier.
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
