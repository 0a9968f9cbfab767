//! Candle builders shared by the strategy tests.

use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

use crate::domain::{Candle, Symbol};

/// The test pair.
pub fn symbol() -> Symbol {
    Symbol::new("BTCUSDT").expect("valid symbol")
}

/// Hourly candles with the given closes (open = previous close, high/low 1 % around the bar).
pub fn candles(closes: &[f64]) -> Vec<Candle> {
    ohlc(&closes.iter().enumerate().map(|(i, c)| (if i == 0 { *c } else { closes[i - 1] }, *c)).collect::<Vec<_>>())
}

/// Hourly candles from (open, close) pairs, high/low 1 % beyond them.
pub fn ohlc(bars: &[(f64, f64)]) -> Vec<Candle> {
    let d = |v: f64| Decimal::from_f64(v).expect("finite test price");
    bars.iter()
        .enumerate()
        .map(|(i, (o, c))| Candle {
            open_time: chrono::DateTime::from_timestamp(i as i64 * 3600, 0).expect("valid time"),
            open: d(*o),
            high: d(o.max(*c) * 1.01),
            low: d(o.min(*c) * 0.99),
            close: d(*c),
            volume: Decimal::ONE,
        })
        .collect()
}
