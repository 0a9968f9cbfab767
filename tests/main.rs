//! mcbot's end-to-end tests, as one test binary: real stores (SQLite file and PostgreSQL), loopback fake servers,
//! virtual time.

mod support;
mod store_contract;
mod pipeline_e2e;
mod cli;
mod pipeline_faults;
mod backtest_pipeline;
mod paper_mode;
mod backtest_parity;
mod upbit;
mod binance;
mod market_data;
