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
    /// The bot was stopped or cannot protect the account by itself (kill, ban, order outcomes unknown).
    Emergency,
}

impl Severity {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
            Severity::Emergency => "emergency",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Severity::Info, Severity::Warning, Severity::Critical, Severity::Emergency]
            .into_iter()
            .find(|v| v.as_str() == s)
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

/// Why a delivery failed, sorted by what the delivery worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyErrorKind {
    /// Network blip, 5xx, time-out: try again after back-off.
    Transient,
    /// The channel asked to slow down (429, `retry_after`): try again no earlier than it said.
    RateLimited,
    /// The message or the channel's settings are wrong (4xx, bad token): retrying will not help.
    Rejected,
}

/// Delivery failed; the outbox keeps the message and retries when the kind allows.
#[derive(Debug, thiserror::Error)]
#[error("notification not delivered ({kind:?}): {message}")]
pub struct NotifyError {
    /// What failed and whether a retry may help.
    pub kind: NotifyErrorKind,
    /// Details.
    pub message: String,
}

impl NotifyError {
    /// True when the same delivery may succeed later.
    pub fn retryable(&self) -> bool {
        self.kind != NotifyErrorKind::Rejected
    }
}

/// A channel to people (Telegram, Discord, email, the log). Kept off the trading path by an outbox.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers one alert.
    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError>;
}
