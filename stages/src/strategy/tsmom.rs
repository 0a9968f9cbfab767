//! Time-series momentum (Moskowitz, Ooi, Pedersen 2012), long-only for spot: hold a symbol while its own return
//! over the lookback is positive, equal weight across symbols, optionally scaled down by realised volatility.

use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;
use serde::{Deserialize, Serialize};

use super::signals::{Ohlcv, SignalRule, Signals, decimal_to_f64};
use super::{Strategy, SymbolBars, Target, closes_f64};
use crate::indicators;

/// TSMOM parameters, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TsmomParams {
    /// Bars over which the momentum return is measured.
    pub lookback: usize,
    /// Minimum momentum return (fraction) to go long; a small positive value avoids flapping on noise.
    pub threshold: f64,
    /// Annualised volatility target per symbol; `None` holds the full equal weight regardless of volatility.
    pub target_vol: Option<f64>,
    /// Bars used to measure realised volatility when `target_vol` is set.
    pub vol_lookback: usize,
}

impl Default for TsmomParams {
    fn default() -> Self {
        Self { lookback: 24, threshold: 0.0, target_vol: None, vol_lookback: 48 }
    }
}

/// The TSMOM strategy.
#[derive(Debug, Clone)]
pub struct Tsmom {
    params: TsmomParams,
    bars_per_year: f64,
}

impl Tsmom {
    /// Builds the strategy; `bars_per_year` annualises volatility for the configured timeframe.
    pub fn new(params: TsmomParams, bars_per_year: f64) -> Self {
        Self { params, bars_per_year }
    }
}

impl Strategy for Tsmom {
    fn name(&self) -> &str {
        "tsmom"
    }

    fn warmup(&self) -> usize {
        let vol = if self.params.target_vol.is_some() { self.params.vol_lookback + 1 } else { 0 };
        (self.params.lookback + 1).max(vol)
    }

    fn targets(&self, bars: &[SymbolBars<'_>]) -> Vec<Target> {
        let n = bars.len().max(1);
        let equal = 1.0 / n as f64;
        bars.iter()
            .map(|b| {
                let closes = closes_f64(b.candles);
                if closes.len() < self.warmup() {
                    return Target {
                        symbol: b.symbol.clone(),
                        weight: b.current_weight,
                        reason: format!("warm-up: {} of {} bars, holding", closes.len(), self.warmup()),
                    };
                }
                let mom = indicators::momentum(&closes, self.params.lookback).unwrap_or(f64::NAN);
                if mom.is_nan() || mom <= self.params.threshold {
                    return Target {
                        symbol: b.symbol.clone(),
                        weight: Decimal::ZERO,
                        reason: format!(
                            "momentum {}b = {:+.2}% <= {:+.2}%: flat",
                            self.params.lookback,
                            mom * 100.0,
                            self.params.threshold * 100.0
                        ),
                    };
                }
                let mut w = equal;
                let mut why = format!(
                    "momentum {}b = {:+.2}% > {:+.2}%: long 1/{n}",
                    self.params.lookback,
                    mom * 100.0,
                    self.params.threshold * 100.0
                );
                if let Some(target) = self.params.target_vol {
                    let vol = indicators::realized_vol(&closes, self.params.vol_lookback, self.bars_per_year);
                    if let Some(vol) = vol.filter(|v| *v > 0.0) {
                        let scale = (target / vol).min(1.0);
                        w *= scale;
                        why.push_str(&format!(", vol {:.1}% -> scale {scale:.3}", vol * 100.0));
                    }
                }
                // Four decimals of weight is finer than any lot size; it keeps stored weights readable.
                let weight = Decimal::from_f64(w).unwrap_or(Decimal::ZERO).round_dp(4);
                Target { symbol: b.symbol.clone(), weight, reason: why }
            })
            .collect()
    }
}

/// The single-symbol vectorised face: long while momentum is above the threshold (an entry flag on every such
/// bar, an exit flag on every other bar after warm-up; the simulator ignores repeats), committing the same
/// volatility-scaled weight `targets` would give a lone symbol, rounded to four decimals as `targets` rounds it.
impl SignalRule for Tsmom {
    fn signals(&self, bars: &Ohlcv) -> Signals {
        let c = &bars.close;
        let n = c.len();
        let mut s = Signals::none(n);
        let mut weights = self.params.target_vol.map(|_| vec![1.0; n]);
        for t in self.warmup().saturating_sub(1)..n {
            let mom = indicators::momentum(&c[..=t], self.params.lookback).unwrap_or(f64::NAN);
            let long = !mom.is_nan() && mom > self.params.threshold;
            s.entries[t] = long;
            s.exits[t] = !long;
            if let (Some(w), Some(target)) = (weights.as_mut(), self.params.target_vol) {
                let vol = indicators::realized_vol(&c[..=t], self.params.vol_lookback, self.bars_per_year);
                let scale = vol.filter(|v| *v > 0.0).map_or(1.0, |v| (target / v).min(1.0));
                w[t] = decimal_to_f64(Decimal::from_f64(scale).unwrap_or(Decimal::ZERO).round_dp(4));
            }
        }
        s.weights = weights;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Candle, Symbol};
    use rust_decimal_macros::dec;

    fn bars(closes: &[i64]) -> Vec<Candle> {
        closes
            .iter()
            .enumerate()
            .map(|(i, c)| Candle {
                open_time: chrono::DateTime::from_timestamp(i as i64 * 3600, 0).unwrap(),
                open: Decimal::from(*c),
                high: Decimal::from(*c),
                low: Decimal::from(*c),
                close: Decimal::from(*c),
                volume: dec!(1),
            })
            .collect()
    }

    #[test]
    fn long_the_rising_flat_the_falling_equal_weight() {
        let s = Tsmom::new(TsmomParams { lookback: 3, ..Default::default() }, 8760.0);
        let (up, down, short) = (bars(&[10, 11, 12, 13]), bars(&[13, 12, 11, 10]), bars(&[1, 2]));
        let (a, b, c) =
            (Symbol::new("AAUSDT").unwrap(), Symbol::new("BBUSDT").unwrap(), Symbol::new("CCUSDT").unwrap());
        let t = s.targets(&[
            SymbolBars { symbol: &a, candles: &up, current_weight: dec!(0) },
            SymbolBars { symbol: &b, candles: &down, current_weight: dec!(0.5) },
            SymbolBars { symbol: &c, candles: &short, current_weight: dec!(0.2) },
        ]);
        assert_eq!(t[0].weight, dec!(0.3333));
        assert!(t[0].reason.contains("+30.00%"), "{}", t[0].reason);
        assert_eq!(t[1].weight, dec!(0));
        assert_eq!(t[2].weight, dec!(0.2), "not enough history: hold");
    }

    #[test]
    fn vectorised_face_agrees_with_targets_for_one_symbol() {
        let closes = [10, 11, 12, 11, 9, 8, 9, 12, 13, 12, 11, 10];
        let params = TsmomParams { lookback: 2, target_vol: Some(2.0), vol_lookback: 3, ..Default::default() };
        let s = Tsmom::new(params, 8760.0);
        let cs = bars(&closes);
        let sig = s.signals(&Ohlcv::from_candles(&cs));
        let sym = Symbol::new("AAUSDT").unwrap();
        for t in 0..cs.len() {
            let got = s.targets(&[SymbolBars { symbol: &sym, candles: &cs[..=t], current_weight: dec!(0) }]);
            if t + 1 < s.warmup() {
                assert!(!sig.entries[t] && !sig.exits[t], "t={t}");
                continue;
            }
            assert_eq!(got[0].weight > dec!(0), sig.entries[t], "t={t}: {}", got[0].reason);
            assert_eq!(sig.exits[t], !sig.entries[t]);
            if sig.entries[t] {
                let w = sig.weights.as_ref().unwrap()[t];
                assert_eq!(got[0].weight, Decimal::from_f64(w).unwrap().round_dp(4), "t={t}");
            }
        }
    }
}
