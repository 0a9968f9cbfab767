//! Indicators over f64 series (the only place floats are allowed besides the backtest kernel): each is a plain
//! function, tested against independently computed values (by hand, or numpy/pandas run once and pasted).
//!
//! Conventions shared by every series function here, so strategies can line them up bar for bar:
//! - the output has the input's length and index `t` uses data up to and including bar `t` only;
//! - bars before the indicator is defined (its warm-up) are `NaN`, and every comparison with `NaN` is false, so
//!   a rule never fires on an undefined value;
//! - a period of 0 gives an all-`NaN` series rather than a panic (configs come from outside).

mod bands;
mod moving;
mod oscillators;
#[cfg(test)]
#[rustfmt::skip]
mod reference_values;
mod sma_compare;
mod volatility;

pub use bands::{Bands, Channel, bollinger, donchian};
pub use moving::{ema, sma, sma_into};
pub use oscillators::{Macd, macd, rsi};
pub use sma_compare::sma_crossings;
pub use volatility::{Adx, adx, atr, true_range};

/// Simple return over `lookback` bars ending at the last value: `x[n-1] / x[n-1-lookback] - 1`.
pub fn momentum(x: &[f64], lookback: usize) -> Option<f64> {
    let n = x.len();
    if lookback == 0 || n <= lookback {
        return None;
    }
    let base = x[n - 1 - lookback];
    (base != 0.0).then(|| x[n - 1] / base - 1.0)
}

/// Annualised standard deviation (ddof = 1) of the last `lookback` simple returns.
pub fn realized_vol(x: &[f64], lookback: usize, periods_per_year: f64) -> Option<f64> {
    let n = x.len();
    if lookback < 2 || n <= lookback {
        return None;
    }
    let rets: Vec<f64> = x[n - 1 - lookback..].windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    let mean = rets.iter().sum::<f64>() / rets.len() as f64;
    let var = rets.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (rets.len() - 1) as f64;
    Some(var.sqrt() * periods_per_year.sqrt())
}

/// Wilder's smoothing (an EMA with alpha = 1/period) seeded with the plain mean of the first `period` defined
/// values of `x` (which may start with `NaN`s). Shared by RSI, ATR and ADX, which Wilder defined this way.
fn wilder(x: &[f64], period: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.len()];
    if period == 0 {
        return out;
    }
    let Some(first) = x.iter().position(|v| !v.is_nan()) else {
        return out;
    };
    let seed_end = first + period - 1;
    if seed_end >= x.len() {
        return out;
    }
    let p = period as f64;
    let mut avg = x[first..=seed_end].iter().sum::<f64>() / p;
    out[seed_end] = avg;
    for t in seed_end + 1..x.len() {
        avg = (avg * (p - 1.0) + x[t]) / p;
        out[t] = avg;
    }
    out
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers for comparing a computed series with pasted reference values.

    /// Asserts two series agree: same `NaN` positions, values within `tol` (absolute, scaled by magnitude).
    pub fn assert_series(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "length");
        for (t, (g, w)) in got.iter().zip(want).enumerate() {
            if w.is_nan() {
                assert!(g.is_nan(), "t={t}: got {g}, want NaN");
            } else {
                assert!((g - w).abs() <= tol * w.abs().max(1.0), "t={t}: got {g}, want {w}");
            }
        }
    }

    /// A fixed 40-bar OHLC series (rounded random walk) shared by the indicator tests; the pasted reference
    /// values were computed from exactly these numbers with numpy/pandas.
    pub const CLOSE: [f64; 40] = [
        100.0, 101.2, 100.7, 102.3, 103.1, 102.4, 101.9, 103.8, 104.6, 104.1, 105.3, 106.2, 105.1, 104.0, 103.2, 104.5,
        105.9, 107.1, 106.4, 108.0, 109.2, 108.1, 107.5, 106.0, 104.8, 105.6, 104.2, 103.0, 101.9, 102.7, 104.1, 105.0,
        106.6, 107.2, 106.1, 107.9, 109.3, 110.2, 109.6, 111.0,
    ];

    /// Highs: close plus a varying wick.
    pub fn high() -> Vec<f64> {
        CLOSE.iter().enumerate().map(|(i, c)| c + 0.3 + (i % 4) as f64 * 0.2).collect()
    }

    /// Lows: close minus a varying wick.
    pub fn low() -> Vec<f64> {
        CLOSE.iter().enumerate().map(|(i, c)| c - 0.4 - (i % 3) as f64 * 0.25).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn momentum_by_hand() {
        assert_eq!(momentum(&[100.0, 110.0, 120.0], 2), Some(0.19999999999999996));
        assert_eq!(momentum(&[100.0, 110.0], 2), None);
        assert_eq!(momentum(&[0.0, 1.0], 1), None);
    }

    #[test]
    fn realized_vol_by_hand() {
        // returns: +10%, -10%; mean 0; sample var = (0.01 + 0.01) / 1 = 0.02
        let v = realized_vol(&[100.0, 110.0, 99.0], 2, 1.0).unwrap();
        assert!((v - 0.02f64.sqrt()).abs() < 1e-12, "{v}");
    }

    #[test]
    fn wilder_by_hand() {
        // seed = mean(1, 2, 3) = 2; then (2*2 + 6)/3 = 10/3; then (10/3*2 + 0)/3 = 20/9
        let w = wilder(&[f64::NAN, 1.0, 2.0, 3.0, 6.0, 0.0], 3);
        assert!(w[..3].iter().all(|v| v.is_nan()));
        assert_eq!(w[3], 2.0);
        assert!((w[4] - 10.0 / 3.0).abs() < 1e-15);
        assert!((w[5] - 20.0 / 9.0).abs() < 1e-15);
        assert!(wilder(&[1.0, 2.0], 3).iter().all(|v| v.is_nan()));
        assert!(wilder(&[1.0, 2.0], 0).iter().all(|v| v.is_nan()));
    }
}
