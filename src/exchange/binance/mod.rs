//! Binance spot, in two layers: [`rest::BinanceRest`], a raw client named after the endpoints that parses
//! every payload at the boundary, and [`adapter::BinanceExchange`], the `Exchange` port on top of it. The kline
//! WebSocket stream ([`stream`]) keeps a cache of closed bars that the adapter serves from.
//!
//! Protocol notes: `shared/reference/binance-spot.md`.

pub mod adapter;
pub mod aggregate;
pub mod candle_cache;
pub mod errors;
pub mod history;
pub mod limits;
pub mod payloads;
pub mod rest;
pub mod rules;
pub mod settings;
pub mod signing;
pub mod stream;
pub mod time_sync;

pub use adapter::BinanceExchange;
pub use candle_cache::{BarSource, CandleCache, ClosedBar};
pub use errors::{BinanceError, NextStep};
pub use limits::{LimitStatus, RiskHook};
pub use rest::BinanceRest;
pub use settings::{BinanceSettings, Secret, StreamSettings};
pub use stream::{StreamHandle, StreamStats};
