//! Helpers shared by the end-to-end tests.
pub mod approval;
pub mod cli;
pub mod db;
pub mod fake_binance;
pub mod fake_discord;
pub mod fake_telegram;
pub mod fake_upbit;
pub mod live_child;
pub mod multipart;
pub mod smtp_sink;
pub mod venue;
