//! Donchian channel breakout (the turtle rule): long when the close breaks above the highest high of the
//! previous `entry` bars, flat when it breaks below the lowest low of the previous `exit` bars.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::signals::{Ohlcv, SignalRule, Signals, decimal_to_f64};
use super::{Strategy, SymbolBars, Target};
use crate::indicators::donchian;

/// Donchian breakout parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DonchianParams {
    /// Channel length for entries, in bars.
    pub entry: usize,
    /// Channel length for exits, in bars (shorter: give back less of a trend).
    pub exit: usize,
}

impl Default for DonchianParams {
    fn default() -> Self {
        Self { entry: 20, exit: 10 }
    }
}

/// The Donchian breakout strategy.
#[derive(Debug, Clone)]
pub struct DonchianBreakout {
    params: DonchianParams,
}

impl DonchianBreakout {
    /// Builds the strategy (the registry validates both lengths are positive).
    pub fn new(params: DonchianParams) -> Self {
        Self { params }
    }
}

impl Strategy for DonchianBreakout {
    fn name(&self) -> &str {
        "donchian"
    }

    fn warmup(&self) -> usize {
        // today's close against the channel of the bars before today
        self.params.entry.max(self.params.exit) + 1
    }

    fn targets(&self, bars: &[SymbolBars<'_>]) -> Vec<Target> {
        let long_weight = (Decimal::ONE / Decimal::from(bars.len().max(1))).round_dp(4);
        let (ne, nx) = (self.params.entry, self.params.exit);
        bars.iter()
            .map(|b| {
                let hold = |reason: String| Target { symbol: b.symbol.clone(), weight: b.current_weight, reason };
                let need = self.warmup();
                if b.candles.len() < need || ne == 0 || nx == 0 {
                    return hold(format!("warm-up: {} of {need} bars, holding", b.candles.len()));
                }
                let m = b.candles.len();
                let close = decimal_to_f64(b.candles[m - 1].close);
                let prev = &b.candles[..m - 1];
                let upper =
                    prev[prev.len() - ne..].iter().map(|c| decimal_to_f64(c.high)).fold(f64::NEG_INFINITY, f64::max);
                let lower = prev[prev.len() - nx..].iter().map(|c| decimal_to_f64(c.low)).fold(f64::INFINITY, f64::min);
                let long = b.current_weight > Decimal::ZERO;
                if !long && close > upper {
                    let reason = format!("close {close} broke the {ne}-bar high {upper}: long");
                    Target { symbol: b.symbol.clone(), weight: long_weight, reason }
                } else if long && close < lower {
                    let reason = format!("close {close} broke the {nx}-bar low {lower}: flat");
                    Target { symbol: b.symbol.clone(), weight: Decimal::ZERO, reason }
                } else {
                    hold(format!("inside the channel ({lower} .. {upper}): holding"))
                }
            })
            .collect()
    }
}

impl SignalRule for DonchianBreakout {
    fn signals(&self, bars: &Ohlcv) -> Signals {
        let n = bars.len();
        let mut s = Signals::none(n);
        let up = donchian(&bars.high, &bars.low, self.params.entry).upper;
        let down = donchian(&bars.high, &bars.low, self.params.exit).lower;
        for t in 1..n {
            s.entries[t] = bars.close[t] > up[t - 1];
            s.exits[t] = bars.close[t] < down[t - 1];
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::test_bars::{candles, symbol};
    use rust_decimal_macros::dec;

    #[test]
    fn breaks_out_and_back_in() {
        // entry 3, exit 2; highs/lows are 1 % around open/close (candles())
        let closes = [10.0, 10.0, 10.0, 12.0, 12.5, 9.0, 9.0];
        let cs = candles(&closes);
        let s = DonchianBreakout::new(DonchianParams { entry: 3, exit: 2 });
        let sig = s.signals(&Ohlcv::from_candles(&cs));
        // bar 3: 12 > max high of bars 0..3 (10.1) -> entry; bar 4: 12.5 > 12.12 -> entry again (ignored when long)
        assert_eq!(sig.entries, vec![false, false, false, true, true, false, false]);
        // bar 5: 9 < min low of bars 3..5 (9.9 * ... = open 10 * 0.99 = 9.9) -> exit
        assert_eq!(sig.exits, vec![false, false, false, false, false, true, false]);
        let sym = symbol();
        for t in 0..closes.len() {
            for (w, flag) in [(dec!(0), sig.entries[t]), (dec!(1), sig.exits[t])] {
                let got = s.targets(&[SymbolBars { symbol: &sym, candles: &cs[..=t], current_weight: w }]);
                let want = if flag { dec!(1) - w } else { w };
                assert_eq!(got[0].weight, want, "t={t} weight={w}: {}", got[0].reason);
            }
        }
    }
}
