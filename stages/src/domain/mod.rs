//! The domain model: typed ids, exact money, instruments, candles, orders, fills, positions.

mod candle;
mod ids;
mod instrument;
mod order;
mod portfolio;

pub use candle::{Candle, OrderBook, Timeframe, TimeframeError};
pub use ids::{ClientOrderId, RunId, Symbol, SymbolError};
pub use instrument::Instrument;
pub use order::{Fill, Order, OrderIntent, OrderStatus, Side};
pub use portfolio::{Balance, Position};

/// Exact money and quantities: prices, sizes, balances, fees and P&L are never floats.
pub use rust_decimal::Decimal;
