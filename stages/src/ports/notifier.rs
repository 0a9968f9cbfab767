use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// How loudly a message must be delivered; channels are routed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Routine (reports, fills).
    Info,
    /// Needs a look soon (stale data, drift corrected).
    Warning,
    /// Needs a human now (trading halted, safe mode).
    Critical,
}

impl Severity {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A message to people, with an optional PNG chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Routing.
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// Details.
    pub body: String,
    /// PNG bytes, for reports.
    pub image_png: Option<Vec<u8>>,
}

/// Delivery failed; the outbox keeps the message and retries.
#[derive(Debug, thiserror::Error)]
#[error("notification not delivered: {0}")]
pub struct NotifyError(pub String);

/// A channel to people (Telegram, Discord, email, the log). Kept off the trading path by an outbox.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers one alert.
    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError>;
}
