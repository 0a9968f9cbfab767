//! Strategies turn closed candles into target weights. The same code runs in the live pipeline's Analysis stage
//! and in backtests, so a backtest is evidence about what the bot will do.

mod bollinger_rsi;
mod donchian;
pub mod registry;
mod signals;
mod sma_cross;
#[cfg(test)]
mod test_bars;
mod tsmom;
mod vol_breakout;

pub use bollinger_rsi::{BollingerRsi, BollingerRsiParams};
pub use donchian::{DonchianBreakout, DonchianParams};
pub use signals::{Columns, Ohlcv, SignalRule, Signals, crossings, decimal_to_f64, tail_closes};
pub use sma_cross::{SmaCross, SmaCrossParams};
pub use tsmom::{Tsmom, TsmomParams};
pub use vol_breakout::{VolBreakout, VolBreakoutParams};

use rust_decimal::Decimal;

use crate::domain::{Candle, Symbol};

/// What a strategy sees of one symbol at decision time.
#[derive(Debug, Clone, Copy)]
pub struct SymbolBars<'a> {
    /// The pair.
    pub symbol: &'a Symbol,
    /// Closed bars, oldest first; the last one closed at decision time.
    pub candles: &'a [Candle],
    /// Weight of equity currently held in this symbol (0 when flat); stateful strategies hold on no signal.
    pub current_weight: Decimal,
}

/// A strategy's wish for one symbol.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    /// The pair.
    pub symbol: Symbol,
    /// Fraction of total equity to hold, in [0, 1] (spot, long-only).
    pub weight: Decimal,
    /// Why, in words a trader reads; stored with the decision.
    pub reason: String,
}

/// A trading strategy over several symbols at once (portfolio strategies weigh symbols against each other).
pub trait Strategy: Send + Sync {
    /// Name, as configured and stored.
    fn name(&self) -> &str;

    /// Bars of history needed before a decision is meaningful.
    fn warmup(&self) -> usize;

    /// One target per input symbol, in input order. A symbol without enough history gets its current weight
    /// back with a reason saying so (no trade on missing evidence).
    fn targets(&self, bars: &[SymbolBars<'_>]) -> Vec<Target>;
}

/// Closing prices as f64 for indicator maths, correctly rounded (equal to parsing the decimal text), so the live
/// pipeline sees the very floats the backtest reads from a CSV and ties break the same way.
pub fn closes_f64(candles: &[Candle]) -> Vec<f64> {
    candles.iter().map(|c| decimal_to_f64(c.close)).collect()
}
