//! The job runtime of mcbot and its jobs.
//!
//! [`runtime::Runtime`] owns the schedule logic (which fire is due, exactly-once via the job ledger, no
//! overlap, catch-up within a grace period, graceful shutdown) and is driven either by tokio-cron-scheduler in
//! production ([`driver`]) or by a test on virtual time ([`runtime::Runtime::tick`]). The jobs themselves are in
//! [`jobs`]: the trading cycle at every bar close, health, reconcile and the period reports.

pub mod bar_trigger;
pub mod consumer;
pub mod driver;
pub mod jobs;
pub mod reports;
pub mod runtime;
pub mod schedule;

pub use bar_trigger::{BarCloseTrigger, ReadyBar, StreamTrigger, TriggeredCycle};
pub use consumer::{Consumer, EventHandler, Pumped};
pub use runtime::{
    AssumeAlive, FireOutcome, Job, JobContext, JobError, JobOutcome, Liveness, RunEnd, RunObserver, RunStart, Runtime,
    RuntimeConfig, describe_claim,
};
pub use schedule::{Schedule, ScheduleError};
