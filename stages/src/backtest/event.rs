//! The event-driven backtest: a strategy's [`Strategy::targets`] called once per closed bar, exactly as the
//! pipeline's Analysis stage calls it, and its decisions filled by the same [`Simulator`] the kernel uses.
//!
//! This is the path for anything that only has a `&dyn Strategy` (the Analysis stage's quick-filter gate, the
//! backtest = pipeline replay test); it is slower than the kernel (one call per bar) but needs no vectorised
//! face. On the same data and fill model the two give identical trades (tested on BTC_USD-1h).

use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

use super::BacktestError;
use super::config::SimConfig;
use super::simulator::{Order, Simulation, Simulator};
use crate::domain::{Candle, Symbol};
use crate::strategy::{Ohlcv, Strategy, SymbolBars};

/// Replays `candles` of one symbol through `strategy`, bar by bar. At bar `t` the strategy sees candles
/// `0..=t` and the weight currently held; a positive target while flat is an entry (committing that weight of
/// cash), a zero target while long is an exit, anything else holds. `history` limits how many past candles the
/// strategy is shown per call (as the live pipeline fetches a window); `None` shows all of them.
pub fn replay(
    strategy: &dyn Strategy,
    symbol: &Symbol,
    candles: &[Candle],
    cfg: &SimConfig,
    history: Option<usize>,
) -> Result<Simulation, BacktestError> {
    if candles.is_empty() {
        return Err(BacktestError::NoData);
    }
    let bars = Ohlcv::from_candles(candles);
    let mut sim = Simulator::new(&bars, cfg)?;
    for t in 0..candles.len() {
        sim.open_bar(t);
        let from = history.map_or(0, |h| (t + 1).saturating_sub(h));
        let long = sim.is_long();
        let current_weight =
            if long { Decimal::from_f64(sim.weight()).unwrap_or(Decimal::ONE).round_dp(4) } else { Decimal::ZERO };
        // a position too small to show at four decimals is still a position
        let current_weight = if long && current_weight.is_zero() { Decimal::new(1, 4) } else { current_weight };
        let view = [SymbolBars { symbol, candles: &candles[from..=t], current_weight }];
        let target = strategy.targets(&view).into_iter().next();
        let order = match target {
            Some(tg) if !long && tg.weight > Decimal::ZERO => {
                Some(Order::Buy(crate::strategy::decimal_to_f64(tg.weight)))
            }
            Some(tg) if long && tg.weight.is_zero() => Some(Order::Sell),
            _ => None,
        };
        sim.close_bar(t, order);
    }
    Ok(sim.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::simulator::simulate;
    use crate::backtest::synthetic::{SeriesSpec, candles};
    use crate::strategy::{SignalRule, SmaCross, SmaCrossParams};

    #[test]
    fn replay_equals_the_kernel_for_the_sma_cross() {
        let candles = candles(&SeriesSpec { bars: 600, seed: 7, ..Default::default() });
        let s = SmaCross::new(SmaCrossParams { fast: 5, slow: 20 });
        let bars = Ohlcv::from_candles(&candles);
        let cfg = SimConfig::default();
        let fast = simulate(&bars, &s.signals(&bars), &cfg).unwrap();
        let slow = replay(&s, &crate::domain::Symbol::new("BTCUSDT").unwrap(), &candles, &cfg, Some(50)).unwrap();
        assert!(fast.trades.len() > 5, "the series should trade: {}", fast.trades.len());
        assert_eq!(fast, slow);
    }
}
