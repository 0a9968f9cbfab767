//! Helpers shared by the end-to-end tests.
pub mod approval;
pub mod cli;
pub mod db;
pub mod fake_binance;
pub mod fake_upbit;
pub mod venue;
