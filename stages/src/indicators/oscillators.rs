//! Oscillators: RSI (Wilder) and MACD.

use super::{moving::ema, wilder};

/// Relative strength index with Wilder's smoothing: average gain and loss over `period` price changes, seeded
/// with their plain mean and then smoothed with alpha = 1/period; `100 - 100 / (1 + gain/loss)`.
/// First defined at bar `period` (it needs `period` changes). A window with no losses reads 100, and one with
/// neither gains nor losses (a flat price) reads 50, the neutral value, so a flat market triggers no rule.
pub fn rsi(close: &[f64], period: usize) -> Vec<f64> {
    let n = close.len();
    let mut gains = vec![f64::NAN; n];
    let mut losses = vec![f64::NAN; n];
    for t in 1..n {
        let d = close[t] - close[t - 1];
        gains[t] = d.max(0.0);
        losses[t] = (-d).max(0.0);
    }
    let (g, l) = (wilder(&gains, period), wilder(&losses, period));
    g.iter()
        .zip(&l)
        .map(|(&g, &l)| match (g.is_nan() || l.is_nan(), l == 0.0) {
            (true, _) => f64::NAN,
            (false, true) if g == 0.0 => 50.0,
            (false, true) => 100.0,
            (false, false) => 100.0 - 100.0 / (1.0 + g / l),
        })
        .collect()
}

/// MACD lines, each the input's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Macd {
    /// `EMA(fast) - EMA(slow)` of the close.
    pub line: Vec<f64>,
    /// EMA(`signal`) of the MACD line, seeded over its first defined values.
    pub signal: Vec<f64>,
    /// `line - signal`: its sign change is the usual crossing rule.
    pub histogram: Vec<f64>,
}

/// Moving average convergence/divergence (Appel): EMAs as in [`ema`] (SMA-seeded), the line defined from bar
/// `slow-1`, the signal from bar `slow-1 + signal-1`.
pub fn macd(close: &[f64], fast: usize, slow: usize, signal: usize) -> Macd {
    let (f, s) = (ema(close, fast), ema(close, slow));
    let line: Vec<f64> = f.iter().zip(&s).map(|(a, b)| a - b).collect();
    let sig = ema(&line, signal);
    let histogram = line.iter().zip(&sig).map(|(a, b)| a - b).collect();
    Macd { line, signal: sig, histogram }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::reference_values as rv;
    use crate::indicators::test_support::{CLOSE, assert_series};

    #[test]
    fn rsi_matches_pandas_wilder() {
        assert_series(&rsi(&CLOSE, 14), &rv::RSI14, 1e-12);
    }

    #[test]
    fn rsi_by_hand_and_edge_cases() {
        // changes +1, -1, +2 (period 2): seed gain (1+0)/2 = 0.5, loss (0+1)/2 = 0.5 -> 50;
        // next: gain (0.5 + 2)/2 = 1.25, loss 0.25 -> RS 5 -> 100 - 100/6
        let r = rsi(&[10.0, 11.0, 10.0, 12.0], 2);
        assert!(r[0].is_nan() && r[1].is_nan());
        assert_eq!(r[2], 50.0);
        assert!((r[3] - (100.0 - 100.0 / 6.0)).abs() < 1e-12);
        assert_eq!(rsi(&[1.0, 2.0, 3.0], 2)[2], 100.0, "only gains");
        assert_eq!(rsi(&[1.0, 1.0, 1.0], 2)[2], 50.0, "flat");
        assert!(rsi(&[1.0, 2.0], 0).iter().all(|v| v.is_nan()));
    }

    #[test]
    fn macd_matches_pandas() {
        let m = macd(&CLOSE, 12, 26, 9);
        assert_series(&m.line, &rv::MACD, 1e-12);
        assert_series(&m.signal, &rv::MACD_SIGNAL, 1e-12);
        assert_series(&m.histogram, &rv::MACD_HIST, 1e-12);
    }
}
