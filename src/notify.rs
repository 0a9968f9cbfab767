//! Notifiers. Until the Telegram/Discord/email channels land, alerts and reports go to the log, where they are
//! still seen, searchable and collected.

use async_trait::async_trait;
use mcbot_stages::ports::{Alert, Notifier, NotifyError, Severity};

/// Writes alerts to the tracing log at a level matching their severity.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        match alert.severity {
            Severity::Info => tracing::info!(target: "mcbot::alert", title = %alert.title, "{}", alert.body),
            Severity::Warning => tracing::warn!(target: "mcbot::alert", title = %alert.title, "{}", alert.body),
            Severity::Critical => tracing::error!(target: "mcbot::alert", title = %alert.title, "{}", alert.body),
        }
        Ok(())
    }
}
