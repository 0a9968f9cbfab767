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
    /// Details, already free of secrets (channel adapters strip tokens and URLs before building it).
    pub message: String,
    /// How long the channel asked the sender to wait (Telegram `retry_after`, Discord `Retry-After` or an
    /// exhausted bucket's reset): the worker never tries earlier.
    pub retry_after: Option<std::time::Duration>,
}

impl NotifyError {
    /// A failure that may pass on a later try.
    pub fn transient(message: impl Into<String>) -> Self {
        Self { kind: NotifyErrorKind::Transient, message: message.into(), retry_after: None }
    }

    /// The channel asked to wait `after` before the next request.
    pub fn rate_limited(message: impl Into<String>, after: std::time::Duration) -> Self {
        Self { kind: NotifyErrorKind::RateLimited, message: message.into(), retry_after: Some(after) }
    }

    /// The channel refused the message or the credentials: retrying the same will not help.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self { kind: NotifyErrorKind::Rejected, message: message.into(), retry_after: None }
    }

    /// True when the same delivery may succeed later.
    pub fn retryable(&self) -> bool {
        self.kind != NotifyErrorKind::Rejected
    }
}

/// A sink for plain alerts (the log). Kept off the trading path by the event log's consumers.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers one alert.
    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError>;
}

/// A channel adapter (Telegram, Discord, email, the log) that the delivery worker calls with one stored
/// message. Retries, back-off and fatigue live in the worker, not in each channel; an adapter only sends once
/// and says, through the error's kind and `retry_after`, what the worker should do next.
#[async_trait]
pub trait ChannelNotifier: Send + Sync {
    /// Which channel it is (the deliveries it works off).
    fn channel(&self) -> super::deliveries::Channel;
    /// Sends `message` to the destination of `route` on this channel.
    async fn deliver(
        &self,
        route: super::deliveries::Route,
        message: &super::deliveries::Message,
    ) -> Result<(), NotifyError>;
}
