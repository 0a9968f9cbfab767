//! Range and trend-strength indicators: true range, ATR (Wilder) and ADX (Wilder).

use super::wilder;

/// True range: the bar's high-low range widened to include a gap from the previous close. The first bar has no
/// previous close, so its true range is `high - low`.
pub fn true_range(high: &[f64], low: &[f64], close: &[f64]) -> Vec<f64> {
    let n = high.len().min(low.len()).min(close.len());
    (0..n)
        .map(|t| {
            let hl = high[t] - low[t];
            if t == 0 { hl } else { hl.max((high[t] - close[t - 1]).abs()).max((low[t] - close[t - 1]).abs()) }
        })
        .collect()
}

/// Average true range with Wilder's smoothing, seeded with the mean true range of bars `0..period` (so defined
/// from bar `period-1`). Used for volatility-sized stops: a stop `k` ATRs away adapts to the market's range.
pub fn atr(high: &[f64], low: &[f64], close: &[f64], period: usize) -> Vec<f64> {
    wilder(&true_range(high, low, close), period)
}

/// Average directional index (Wilder), with the +DI and -DI lines it is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct Adx {
    /// Trend strength, 0..100, direction-free.
    pub adx: Vec<f64>,
    /// Positive directional indicator.
    pub plus_di: Vec<f64>,
    /// Negative directional indicator.
    pub minus_di: Vec<f64>,
}

/// ADX: directional movement from bar 1 (`+DM = up move` when it beats the down move and is positive, likewise
/// `-DM`), DI = 100 x Wilder-smoothed DM / Wilder-smoothed true range (both seeded over bars `1..=period`, so
/// defined from bar `period`), DX = 100 |+DI - -DI| / (+DI + -DI), ADX = Wilder-smoothed DX (defined from bar
/// `2*period - 1`). Wilder's running sums and these running means differ by the factor `period`, which cancels.
pub fn adx(high: &[f64], low: &[f64], close: &[f64], period: usize) -> Adx {
    let n = high.len().min(low.len()).min(close.len());
    let mut tr = true_range(high, low, close);
    let (mut pdm, mut mdm) = (vec![f64::NAN; n], vec![f64::NAN; n]);
    for t in 1..n {
        let up = high[t] - high[t - 1];
        let down = low[t - 1] - low[t];
        pdm[t] = if up > down && up > 0.0 { up } else { 0.0 };
        mdm[t] = if down > up && down > 0.0 { down } else { 0.0 };
    }
    if let Some(first) = tr.first_mut() {
        *first = f64::NAN; // DM starts at bar 1; so does the true range it is divided by
    }
    let atr = wilder(&tr, period);
    let (sp, sm) = (wilder(&pdm, period), wilder(&mdm, period));
    let plus_di: Vec<f64> = sp.iter().zip(&atr).map(|(d, a)| 100.0 * d / a).collect();
    let minus_di: Vec<f64> = sm.iter().zip(&atr).map(|(d, a)| 100.0 * d / a).collect();
    let dx: Vec<f64> = plus_di
        .iter()
        .zip(&minus_di)
        .map(|(p, m)| if p + m == 0.0 { 0.0 } else { 100.0 * (p - m).abs() / (p + m) })
        .collect();
    Adx { adx: wilder(&dx, period), plus_di, minus_di }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::reference_values as rv;
    use crate::indicators::test_support::{CLOSE, assert_series, high, low};

    #[test]
    fn true_range_and_atr_match_pandas() {
        let (h, l) = (high(), low());
        assert_series(&true_range(&h, &l, &CLOSE), &rv::TR, 1e-12);
        assert_series(&atr(&h, &l, &CLOSE, 14), &rv::ATR14, 1e-12);
    }

    #[test]
    fn true_range_by_hand() {
        // gap up: previous close 10, bar 12..13 -> TR = 13 - 10 = 3
        assert_eq!(true_range(&[11.0, 13.0], &[9.0, 12.0], &[10.0, 12.5]), vec![2.0, 3.0]);
    }

    #[test]
    fn adx_matches_pandas() {
        let a = adx(&high(), &low(), &CLOSE, 7);
        assert_series(&a.plus_di, &rv::PDI7, 1e-12);
        assert_series(&a.minus_di, &rv::MDI7, 1e-12);
        assert_series(&a.adx, &rv::ADX7, 1e-12);
    }
}
