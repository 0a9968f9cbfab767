//! mcbot's end-to-end tests, as one test binary: real stores (SQLite file and PostgreSQL), loopback fake servers,
//! virtual time.

mod admin_http;
mod backtest_parity;
mod backtest_pipeline;
mod binance;
mod cli;
mod commands;
mod consumers;
mod control_api;
mod crash_recovery;
mod crash_soak;
mod deploy_files;
mod error_tracking;
mod execution_guards;
mod health_events;
mod live_guards;
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
mod replica_child;
mod replicas;
mod reports;
mod shutdown;
mod store_contract;
mod support;
mod sweep_shards;
mod upbit;
mod upgrade;
