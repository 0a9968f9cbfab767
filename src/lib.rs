//! The mcbot binary's library: CLI, config, composition root and every adapter that does I/O.

pub mod admin;
pub mod app;
pub mod candles_csv;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control_api;
pub mod db_lock;
pub mod error_tracking;
pub mod exchange;
pub mod live;
pub mod liveness;
pub mod logging;
pub mod market_data;
pub mod market_stream;
pub mod metrics;
pub mod notify;
pub mod output;
pub mod reports;
pub mod store;
