//! The SMA crossover of the reference spec (../shared/bench/REFERENCE_SPEC.md): long when the fast SMA crosses
//! above the slow one, flat when it crosses below, otherwise keep the current position. It is the strategy every
//! backtest engine here is checked against, so its arithmetic is the spec's to the bit.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::signals::{Ohlcv, SignalRule, Signals, tail_closes};
use super::{Strategy, SymbolBars, Target};
use crate::indicators::sma_crossings;

/// SMA crossover parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmaCrossParams {
    /// Fast SMA window in bars.
    pub fast: usize,
    /// Slow SMA window in bars.
    pub slow: usize,
}

impl Default for SmaCrossParams {
    fn default() -> Self {
        Self { fast: 10, slow: 30 }
    }
}

/// The SMA crossover strategy.
#[derive(Debug, Clone)]
pub struct SmaCross {
    params: SmaCrossParams,
}

impl SmaCross {
    /// Builds the strategy (the registry validates `0 < fast < slow`).
    pub fn new(params: SmaCrossParams) -> Self {
        Self { params }
    }

    /// The parameters.
    pub fn params(&self) -> SmaCrossParams {
        self.params
    }
}

/// Sum of `x` strictly left to right divided by its length: the spec's canonical SMA of one window.
fn window_mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

impl Strategy for SmaCross {
    fn name(&self) -> &str {
        "sma-cross"
    }

    fn warmup(&self) -> usize {
        // a crossing compares bar t with bar t-1, both need the slow SMA
        self.params.slow.max(self.params.fast) + 1
    }

    fn targets(&self, bars: &[SymbolBars<'_>]) -> Vec<Target> {
        let (fast, slow) = (self.params.fast, self.params.slow);
        let long_weight = (Decimal::ONE / Decimal::from(bars.len().max(1))).round_dp(4);
        bars.iter()
            .map(|b| {
                let need = self.warmup();
                let hold = |reason: String| Target { symbol: b.symbol.clone(), weight: b.current_weight, reason };
                if fast == 0 || slow == 0 {
                    return hold("zero-length SMA window: holding".into());
                }
                let c = tail_closes(b.candles, need);
                if c.len() < need {
                    return hold(format!("warm-up: {} of {need} bars, holding", c.len()));
                }
                let m = c.len();
                let (f1, s1) = (window_mean(&c[m - fast..]), window_mean(&c[m - slow..]));
                let (f0, s0) = (window_mean(&c[m - 1 - fast..m - 1]), window_mean(&c[m - 1 - slow..m - 1]));
                let long = b.current_weight > Decimal::ZERO;
                if !long && f1 > s1 && f0 <= s0 {
                    Target {
                        symbol: b.symbol.clone(),
                        weight: long_weight,
                        reason: format!("SMA{fast} {f1:.6} crossed above SMA{slow} {s1:.6}: long"),
                    }
                } else if long && f1 < s1 && f0 >= s0 {
                    Target {
                        symbol: b.symbol.clone(),
                        weight: Decimal::ZERO,
                        reason: format!("SMA{fast} {f1:.6} crossed below SMA{slow} {s1:.6}: flat"),
                    }
                } else {
                    hold(format!("no crossing (SMA{fast} {f1:.6}, SMA{slow} {s1:.6}): holding"))
                }
            })
            .collect()
    }
}

impl SignalRule for SmaCross {
    fn signals(&self, bars: &Ohlcv) -> Signals {
        // the same flags as crossings(sma(fast), sma(slow)), in O(1) per bar (see indicators::sma_compare)
        let (entries, exits) = sma_crossings(&bars.close, self.params.fast, self.params.slow);
        Signals { entries, exits, weights: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::test_bars::{candles, symbol};
    use rust_decimal_macros::dec;

    fn strategy() -> SmaCross {
        SmaCross::new(SmaCrossParams { fast: 2, slow: 3 })
    }

    #[test]
    fn crosses_up_while_flat_then_down_while_long() {
        // SMA2 vs SMA3: closes 3,2,1 -> falling; 5 -> SMA2 3 > SMA3 2.67 after 1.5 <= 2 -> cross up at bar 3
        let closes = [3.0, 2.0, 1.0, 5.0, 6.0, 1.0, 0.5];
        let s = strategy();
        let sig = s.signals(&Ohlcv { close: closes.to_vec(), ..Default::default() });
        assert_eq!(sig.entries, vec![false, false, false, true, false, false, false]);
        assert_eq!(sig.exits, vec![false, false, false, false, false, true, false]);

        let sym = symbol();
        let cs = candles(&closes);
        let at = |t: usize, w: Decimal| {
            s.targets(&[SymbolBars { symbol: &sym, candles: &cs[..=t], current_weight: w }]).remove(0).weight
        };
        assert_eq!(at(2, dec!(0)), dec!(0), "warm-up holds flat");
        assert_eq!(at(3, dec!(0)), dec!(1), "cross up while flat");
        assert_eq!(at(3, dec!(1)), dec!(1), "cross up while long: hold");
        assert_eq!(at(4, dec!(1)), dec!(1), "no crossing: hold long");
        assert_eq!(at(4, dec!(0)), dec!(0), "no crossing: hold flat");
        assert_eq!(at(5, dec!(1)), dec!(0), "cross down while long");
        assert_eq!(at(5, dec!(0)), dec!(0), "cross down while flat: stay flat");
    }

    #[test]
    fn a_tie_is_not_a_crossing_but_leaving_it_is() {
        // SMA1 vs SMA2 (fast 1, slow 2): closes 1,1,1,2 -> equal, equal, then above: cross up at bar 3
        let s = SmaCross::new(SmaCrossParams { fast: 1, slow: 2 });
        let sig = s.signals(&Ohlcv { close: vec![1.0, 1.0, 1.0, 2.0], ..Default::default() });
        assert_eq!(sig.entries, vec![false, false, false, true]);
    }

    #[test]
    fn splits_the_long_weight_across_symbols() {
        let s = strategy();
        let (a, b) = (symbol(), crate::domain::Symbol::new("ETHUSDT").unwrap());
        let cs = candles(&[3.0, 2.0, 1.0, 5.0]);
        let t = s.targets(&[
            SymbolBars { symbol: &a, candles: &cs, current_weight: dec!(0) },
            SymbolBars { symbol: &b, candles: &cs[..2], current_weight: dec!(0.2) },
        ]);
        assert_eq!((t[0].weight, t[1].weight), (dec!(0.5), dec!(0.2)));
    }
}
