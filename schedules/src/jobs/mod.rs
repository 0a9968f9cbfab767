//! The scheduled jobs.

mod health;
mod reconcile;
mod report;
mod trading_cycle;

pub use health::HealthJob;
pub use reconcile::{ReconcileJob, ReconcileReport, UnmanagedHoldings};
pub use report::{Period, ReportJob, period_bounds, report_event};
pub use trading_cycle::TradingCycleJob;
