//! What failed, as a closed set: stage, job, exchange and store errors carry one, so logs, events, metrics and
//! error tracking group failures by cause rather than by message text.

use serde::{Deserialize, Serialize};

/// The cause of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The venue was unreachable, rate-limited or answered 5xx.
    Exchange,
    /// The venue answered something that cannot be parsed.
    ExchangeMalformed,
    /// The venue refused the request or the credentials (not retryable).
    ExchangeFatal,
    /// The database failed.
    Store,
    /// A stage ran past its time limit.
    Timeout,
    /// Market data missing or stale.
    Data,
    /// An order was sent and its outcome is unknown.
    OrderOutcomeUnknown,
    /// The run's claim was taken over by another process.
    ClaimLost,
    /// Local state disagrees with the exchange.
    Drift,
    /// The strategy or its configuration failed.
    Strategy,
    /// The process is stopping.
    Shutdown,
}

impl FailureKind {
    /// Name as recorded.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Exchange => "exchange",
            FailureKind::ExchangeMalformed => "exchange_malformed",
            FailureKind::ExchangeFatal => "exchange_fatal",
            FailureKind::Store => "store",
            FailureKind::Timeout => "timeout",
            FailureKind::Data => "data",
            FailureKind::OrderOutcomeUnknown => "order_outcome_unknown",
            FailureKind::ClaimLost => "claim_lost",
            FailureKind::Drift => "drift",
            FailureKind::Strategy => "strategy",
            FailureKind::Shutdown => "shutdown",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
