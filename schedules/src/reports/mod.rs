//! Period reports (daily, weekly, monthly): every figure computed from the store with exact decimals
//! ([`figures`]), rendered as text and headline fields ([`text`]). The report jobs, the `mcbot report` command
//! and the chat commands all build reports here; charts are drawn by the binary from a report's series.

pub mod figures;
mod period;
pub mod text;

pub use figures::{Report, ReportSettings, build_report};
pub use period::{Period, period_bounds};
