//! The scheduled jobs.

mod health;
mod monitor_inputs;
mod reconcile;
mod report;
mod trading_cycle;

pub use health::HealthJob;
pub use monitor_inputs::{BacktestReference, Monitors, ProcessProbe, ReferenceReturns};
pub use reconcile::{ReconcileJob, ReconcileReport, UnmanagedHoldings};
pub use report::{Period, ReportJob, period_bounds, report_event};
pub use trading_cycle::TradingCycleJob;
