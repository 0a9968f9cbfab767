//! The trading core of mcbot.
//!
//! Everything here is pure domain logic behind ports: the same strategy, risk and portfolio code runs in
//! backtest, mock, paper, shadow and live, and only the [`ports::Exchange`] behind it changes. The crate has
//! no network or database dependency on purpose, so it can be tested on virtual time and replayed bar by bar.

pub mod backtest;
pub mod clock;
pub mod control;
pub mod domain;
pub mod indicators;
pub mod live;
pub mod monitors;
pub mod pipeline;
pub mod ports;
pub mod sim;
pub mod strategy;

pub use clock::{Clock, ManualClock, ShiftedClock, SystemClock};
