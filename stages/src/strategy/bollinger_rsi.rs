//! Bollinger + RSI mean reversion: buy a stretched, oversold market (close under the lower band and RSI under
//! `oversold`), sell once it has reverted (close above the middle band) or become overbought.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::signals::{Ohlcv, SignalRule, Signals, decimal_to_f64};
use super::{Strategy, SymbolBars, Target};
use crate::indicators::{bollinger, rsi};

/// Bollinger + RSI parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BollingerRsiParams {
    /// Bollinger window in bars.
    pub period: usize,
    /// Band width in standard deviations.
    pub k: f64,
    /// RSI period (Wilder).
    pub rsi_period: usize,
    /// RSI below which the market counts as oversold (entry).
    pub oversold: f64,
    /// RSI above which the market counts as overbought (exit).
    pub overbought: f64,
}

impl Default for BollingerRsiParams {
    fn default() -> Self {
        Self { period: 20, k: 2.0, rsi_period: 14, oversold: 30.0, overbought: 70.0 }
    }
}

/// The Bollinger + RSI mean-reversion strategy.
///
/// RSI is recursive (Wilder smoothing), so its value depends on how much history it is given; the bar-by-bar
/// face uses all candles it receives, and equals the vectorised face when it receives the same history.
#[derive(Debug, Clone)]
pub struct BollingerRsi {
    params: BollingerRsiParams,
}

impl BollingerRsi {
    /// Builds the strategy (the registry validates the periods are positive).
    pub fn new(params: BollingerRsiParams) -> Self {
        Self { params }
    }

    /// (entry, exit) flags for every bar of `close`.
    fn flags(&self, close: &[f64]) -> (Vec<bool>, Vec<bool>) {
        let p = &self.params;
        let b = bollinger(close, p.period, p.k);
        let r = rsi(close, p.rsi_period);
        let entries = (0..close.len()).map(|t| close[t] < b.lower[t] && r[t] < p.oversold).collect();
        let exits = (0..close.len()).map(|t| close[t] > b.middle[t] || r[t] > p.overbought).collect();
        (entries, exits)
    }
}

impl Strategy for BollingerRsi {
    fn name(&self) -> &str {
        "bollinger-rsi"
    }

    fn warmup(&self) -> usize {
        self.params.period.max(self.params.rsi_period + 1)
    }

    fn targets(&self, bars: &[SymbolBars<'_>]) -> Vec<Target> {
        let long_weight = (Decimal::ONE / Decimal::from(bars.len().max(1))).round_dp(4);
        bars.iter()
            .map(|b| {
                let hold = |reason: String| Target { symbol: b.symbol.clone(), weight: b.current_weight, reason };
                if b.candles.len() < self.warmup() {
                    return hold(format!("warm-up: {} of {} bars, holding", b.candles.len(), self.warmup()));
                }
                let close: Vec<f64> = b.candles.iter().map(|c| decimal_to_f64(c.close)).collect();
                let (entries, exits) = self.flags(&close);
                let (entry, exit) = (entries.last() == Some(&true), exits.last() == Some(&true));
                let long = b.current_weight > Decimal::ZERO;
                if !long && entry {
                    let reason = "close under the lower band and RSI oversold: long".to_owned();
                    Target { symbol: b.symbol.clone(), weight: long_weight, reason }
                } else if long && exit {
                    let reason = "reverted above the middle band or RSI overbought: flat".to_owned();
                    Target { symbol: b.symbol.clone(), weight: Decimal::ZERO, reason }
                } else {
                    hold("no signal: holding".into())
                }
            })
            .collect()
    }
}

impl SignalRule for BollingerRsi {
    fn signals(&self, bars: &Ohlcv) -> Signals {
        let (entries, exits) = self.flags(&bars.close);
        Signals { entries, exits, weights: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::test_bars::{candles, symbol};
    use rust_decimal_macros::dec;

    #[test]
    fn buys_the_oversold_dip_and_sells_the_reversion() {
        // period 3, k 1, RSI 2: a steady fall then a bounce
        let closes = [10.0, 10.0, 10.0, 9.0, 8.0, 7.0, 8.5, 9.5, 10.0];
        let p = BollingerRsiParams { period: 3, k: 1.0, rsi_period: 2, oversold: 30.0, overbought: 70.0 };
        let s = BollingerRsi::new(p);
        let cs = candles(&closes);
        let sig = s.signals(&Ohlcv::from_candles(&cs));
        // bar 3: window 10,10,9 mean 9.667 sd 0.471 -> lower 9.195 > 9, RSI(2) after a flat then -1: 0 -> entry
        assert!(sig.entries[3], "{sig:?}");
        // bar 6: 8.5 > mean(8, 7, 8.5) = 7.83 -> exit
        assert!(sig.exits[6] && !sig.entries[6]);
        let sym = symbol();
        for t in 0..closes.len() {
            for (w, flag) in [(dec!(0), sig.entries[t]), (dec!(1), sig.exits[t])] {
                let got = s.targets(&[SymbolBars { symbol: &sym, candles: &cs[..=t], current_weight: w }]);
                assert_eq!(got[0].weight, if flag { dec!(1) - w } else { w }, "t={t}");
            }
        }
    }
}
