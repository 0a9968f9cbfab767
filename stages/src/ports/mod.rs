//! The ports: what the core needs from the outside world, as traits the adapters in `src/` implement.

mod exchange;
mod notifier;
mod store;

pub use exchange::{Exchange, ExchangeError, OrderAck};
pub use notifier::{Alert, Notifier, NotifyError, Severity};
pub use store::{
    BotState, EquitySnapshot, JobClaim, JobRunRecord, JobStatus, ReportRecord, RiskEvent, SignalRecord, Store,
    StoreError,
};
