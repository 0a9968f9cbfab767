//! Volatility breakout (Larry Williams): long when the bar closes more than `k` times the previous bar's range
//! above its open, flat when it closes that far below. The range scales the threshold to current volatility.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::signals::{Ohlcv, SignalRule, Signals, decimal_to_f64};
use super::{Strategy, SymbolBars, Target};

/// Volatility breakout parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VolBreakoutParams {
    /// Multiple of the previous bar's high-low range a close must move from the open to count as a breakout.
    pub k: f64,
}

impl Default for VolBreakoutParams {
    fn default() -> Self {
        Self { k: 0.5 }
    }
}

/// The volatility breakout strategy.
#[derive(Debug, Clone)]
pub struct VolBreakout {
    params: VolBreakoutParams,
}

impl VolBreakout {
    /// Builds the strategy (the registry validates `k >= 0`).
    pub fn new(params: VolBreakoutParams) -> Self {
        Self { params }
    }
}

/// (entry, exit) of bar `t` from its open/close and the previous bar's range; shared by both faces.
fn rule(k: f64, open: f64, close: f64, prev_high: f64, prev_low: f64) -> (bool, bool) {
    let band = k * (prev_high - prev_low);
    (close > open + band, close < open - band)
}

impl Strategy for VolBreakout {
    fn name(&self) -> &str {
        "vol-breakout"
    }

    fn warmup(&self) -> usize {
        2
    }

    fn targets(&self, bars: &[SymbolBars<'_>]) -> Vec<Target> {
        let long_weight = (Decimal::ONE / Decimal::from(bars.len().max(1))).round_dp(4);
        bars.iter()
            .map(|b| {
                let hold = |reason: String| Target { symbol: b.symbol.clone(), weight: b.current_weight, reason };
                let [.., p, c] = b.candles else {
                    return hold(format!("warm-up: {} of 2 bars, holding", b.candles.len()));
                };
                let f = decimal_to_f64;
                let (up, down) = rule(self.params.k, f(c.open), f(c.close), f(p.high), f(p.low));
                let long = b.current_weight > Decimal::ZERO;
                if !long && up {
                    let reason = format!("close {} above open + {} x range: long", c.close, self.params.k);
                    Target { symbol: b.symbol.clone(), weight: long_weight, reason }
                } else if long && down {
                    let reason = format!("close {} below open - {} x range: flat", c.close, self.params.k);
                    Target { symbol: b.symbol.clone(), weight: Decimal::ZERO, reason }
                } else {
                    hold("no breakout: holding".into())
                }
            })
            .collect()
    }
}

impl SignalRule for VolBreakout {
    fn signals(&self, bars: &Ohlcv) -> Signals {
        let n = bars.len();
        let mut s = Signals::none(n);
        for t in 1..n {
            (s.entries[t], s.exits[t]) =
                rule(self.params.k, bars.open[t], bars.close[t], bars.high[t - 1], bars.low[t - 1]);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::test_bars::{ohlc, symbol};
    use rust_decimal_macros::dec;

    #[test]
    fn breakout_by_hand_and_both_faces_agree() {
        // bar 0 range: 10.1 - 9.9 = 0.2 (candles 1 % around 10); k = 0.5 -> band 0.1
        let cs = ohlc(&[(10.0, 10.0), (10.0, 10.15), (10.15, 10.1), (10.0, 9.0)]);
        let s = VolBreakout::new(VolBreakoutParams { k: 0.5 });
        let sig = s.signals(&Ohlcv::from_candles(&cs));
        assert_eq!(sig.entries, vec![false, true, false, false]);
        assert_eq!(sig.exits, vec![false, false, false, true]);
        let sym = symbol();
        for t in 0..cs.len() {
            for (w, flag) in [(dec!(0), sig.entries[t]), (dec!(1), sig.exits[t])] {
                let got = s.targets(&[SymbolBars { symbol: &sym, candles: &cs[..=t], current_weight: w }]);
                assert_eq!(got[0].weight, if flag { dec!(1) - w } else { w }, "t={t}");
            }
        }
    }
}
