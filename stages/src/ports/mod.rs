//! The ports: what the core needs from the outside world, as traits the adapters in `src/` implement.

mod deliveries;
mod events;
mod exchange;
mod failure;
mod notifier;
mod store;

pub use deliveries::{
    Channel, ChartImage, Delivery, DeliveryCount, DeliveryStatus, DeliveryStore, FollowUp, Message, NewDelivery, Route,
};
pub use events::{Committed, Event, EventKind, EventQuery, NewEvent};
pub use exchange::{Exchange, ExchangeError, OrderAck};
pub use failure::FailureKind;
pub use notifier::{Alert, ChannelNotifier, Notifier, NotifyError, NotifyErrorKind, Severity};
pub use store::{
    BotState, Claimant, ConsumerCursor, ConsumerCursors, DayCounts, EquitySnapshot, FillStrategy, JobClaim,
    JobRunRecord, JobStatus, LiveStatus, ReportRecord, RunFence, RunHolder, SignalRecord, Store, StoreError,
    TradingMode, UnitOfWork, Versioned,
};
