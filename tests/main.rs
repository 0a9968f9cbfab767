//! mcbot's end-to-end tests, as one test binary: real stores (SQLite file and PostgreSQL), loopback fake servers,
//! virtual time.

mod admin_http;
mod backtest_parity;
mod backtest_pipeline;
mod binance;
mod cli;
mod commands;
mod consumers;
mod crash_recovery;
mod error_tracking;
mod execution_guards;
mod health_events;
mod live_path;
mod market_data;
mod monitoring;
mod notifications;
mod notify_rules;
mod operator;
mod paper_mode;
mod pipeline_e2e;
mod pipeline_faults;
mod reconcile_drift;
mod shutdown;
mod store_contract;
mod support;
mod upbit;
mod upgrade;
