//! The event log's vocabulary: every fact the bot records is one [`NewEvent`], written in the same transaction as
//! the change it reports and read back as an [`Event`] with a sequence id. Notifications, metrics, reports and
//! error tracking consume the log by cursor instead of being called inline on the trading path.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Severity;
use crate::domain::Symbol;

macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What an event reports. The stored name is stable: consumers route and count by it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum EventKind {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)*
        }

        impl EventKind {
            /// Every kind, for `mcbot events --kind` and documentation.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// Stored name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }

            /// Parses a stored name; `None` for a kind this build does not know.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($name => Some(EventKind::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

event_kinds! {
    /// A trading cycle claimed its bar and started.
    CycleStarted => "cycle_started",
    /// A trading cycle ended (its stage outcomes in the payload).
    CycleFinished => "cycle_finished",
    /// A stage stopped the cycle.
    StageHalted => "stage_halted",
    /// A strategy decided a target weight.
    Signal => "signal",
    /// An order was recorded and is being sent under its client order id.
    OrderPlaced => "order_placed",
    /// The venue accepted an order.
    OrderAcknowledged => "order_acknowledged",
    /// An order executed (fully or partly).
    OrderFilled => "order_filled",
    /// The venue refused an order.
    OrderRejected => "order_rejected",
    /// A request that may have reached the venue has no known outcome: entries stop until it is resolved.
    OrderOutcomeUnknown => "order_outcome_unknown",
    /// An order was not placed (refused before it was sent); a retried cycle places it under the same id.
    OrderNotPlaced => "order_not_placed",
    /// A cancellation reached the venue.
    OrderCanceled => "order_canceled",
    /// A flat position was opened.
    PositionOpened => "position_opened",
    /// A position's quantity changed.
    PositionChanged => "position_changed",
    /// A position went flat, with its realized P&L and fees.
    PositionClosed => "position_closed",
    /// A circuit breaker tripped.
    BreakerTripped => "breaker_tripped",
    /// A circuit breaker cleared (new period, or reset by a person).
    BreakerCleared => "breaker_cleared",
    /// Safe mode went on: no entries until a person clears it.
    SafeModeOn => "safe_mode_on",
    /// Safe mode was cleared.
    SafeModeOff => "safe_mode_off",
    /// Entries were paused by a command.
    TradingPaused => "trading_paused",
    /// Trading resumed by a command.
    TradingResumed => "trading_resumed",
    /// The bot was killed (halted) by a command.
    TradingKilled => "trading_killed",
    /// A stop-loss closed a position.
    StopLoss => "stop_loss",
    /// A take-profit closed a position.
    TakeProfit => "take_profit",
    /// Reconciliation adopted the exchange's quantity within tolerance.
    ReconcileCorrected => "reconcile_corrected",
    /// Reconciliation found drift beyond tolerance or an order it cannot explain.
    ReconcileDrift => "reconcile_drift",
    /// An order the exchange never saw was closed as not placed.
    ReconcileClosedUnplaced => "reconcile_closed_unplaced",
    /// A scheduled job failed.
    JobFailed => "job_failed",
    /// Stored market data of a symbol went stale.
    StaleData => "stale_data",
    /// Stale market data recovered.
    DataRecovered => "data_recovered",
    /// A health monitor started firing (slippage, fill latency, fees, drawdown beyond its bound, a shift in
    /// returns, runtime lag, memory, descriptors); its condition key is the dedup key.
    MonitorAlert => "monitor_alert",
    /// A health monitor stopped firing.
    MonitorCleared => "monitor_cleared",
    /// The venue rate-limited the bot.
    RateLimited => "rate_limited",
    /// The venue banned the bot's IP or key.
    Banned => "banned",
    /// The process started.
    Started => "started",
    /// The process stopped cleanly.
    Stopped => "stopped",
    /// The previous process ended without stopping cleanly.
    Crashed => "crashed",
    /// A period report was produced.
    ReportProduced => "report_produced",
    /// A chat that is not configured tried to command the bot (it was told nothing).
    UnauthorizedChat => "unauthorized_chat",
    /// A notification channel cannot work as configured (another process polls the same chat bot).
    ChannelFailed => "channel_failed",
    /// Mode live started with every guard met: real orders (after the dry-run cycles), at the canary fraction.
    LiveStarted => "live_started",
    /// Mode live was asked for but a guard failed: the bot trades paper, and says which guard and why.
    LiveRefused => "live_refused",
    /// A call to the admin HTTP API came without the right token (rate-limited: one event per minute).
    UnauthorizedApi => "unauthorized_api",
    /// A person acknowledged the repeating emergency messages (they stop repeating).
    AlertAcknowledged => "alert_acknowledged",
    /// A person muted (or unmuted) the messages of an event kind for a while.
    NotificationsMuted => "notifications_muted",
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event about to be written. Built with [`NewEvent::new`] and the chained setters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// When the fact happened (injected clock).
    pub ts: DateTime<Utc>,
    /// What it reports.
    pub kind: EventKind,
    /// How loudly people must hear of it.
    pub severity: Severity,
    /// The run that produced it.
    pub run_id: Option<String>,
    /// The pair it concerns.
    pub symbol: Option<Symbol>,
    /// One line for people.
    pub message: String,
    /// The numbers, for consumers (exact decimals as strings).
    pub payload: serde_json::Value,
    /// Facts with the same key are one condition: consumers use it to suppress repeats.
    pub dedup_key: Option<String>,
}

impl NewEvent {
    /// An event with an empty payload.
    pub fn new(ts: DateTime<Utc>, kind: EventKind, severity: Severity, message: impl Into<String>) -> Self {
        Self {
            ts,
            kind,
            severity,
            run_id: None,
            symbol: None,
            message: message.into(),
            payload: serde_json::Value::Object(serde_json::Map::new()),
            dedup_key: None,
        }
    }

    /// Sets the run.
    pub fn run(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// Sets the run if there is one.
    pub fn maybe_run(mut self, run_id: Option<&str>) -> Self {
        self.run_id = run_id.map(str::to_owned);
        self
    }

    /// Sets the symbol.
    pub fn symbol(mut self, symbol: &Symbol) -> Self {
        self.symbol = Some(symbol.clone());
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = payload;
        self
    }

    /// Sets the dedup key.
    pub fn dedup(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }
}

/// The events one commit appended, with their ids, as a reader would read them back: handed to in-process
/// consumers after the commit, so one that holds its cursor need not read back what its own process just wrote.
pub type Committed = std::sync::Arc<[Event]>;

/// An event as stored, with its place in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Monotonic, gap-free for one writer; a consumer's cursor is the last id it handled.
    pub id: i64,
    /// The fact.
    #[serde(flatten)]
    pub event: NewEvent,
}

/// Which events to read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    /// Only ids above this (a consumer's cursor).
    pub after: i64,
    /// Only these kinds (empty: all).
    pub kinds: Vec<EventKind>,
    /// Only this severity and above.
    pub min_severity: Option<Severity>,
    /// At most this many, oldest first.
    pub limit: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_stored_names() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
            assert_eq!(serde_json::to_value(k).ok(), Some(serde_json::json!(k.as_str())));
        }
        assert_eq!(EventKind::parse("no_such_kind"), None);
    }
}
