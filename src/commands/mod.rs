//! One module per subcommand: each turns validated arguments into calls on the composition root and prints
//! text tables for people or one JSON document for scripts.

pub mod backtest;
pub mod backup;
pub mod control;
pub mod data;
pub mod events;
pub mod health;
pub mod jobs;
pub mod migrate;
pub mod notify;
pub mod preflight;
pub mod report;
pub mod run_once;
pub mod scheduler;
pub mod status;
pub mod validate;
