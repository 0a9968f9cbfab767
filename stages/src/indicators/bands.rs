//! Price envelopes: Bollinger bands and the Donchian channel.

use super::moving::sma;

/// A band around a centre line, each the input's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Bands {
    /// Upper band.
    pub upper: Vec<f64>,
    /// Centre line.
    pub middle: Vec<f64>,
    /// Lower band.
    pub lower: Vec<f64>,
}

/// Bollinger bands: the canonical [`sma`] over `period` bars plus and minus `k` population standard deviations
/// (ddof = 0, Bollinger's and TA-Lib's definition) of the same window.
pub fn bollinger(close: &[f64], period: usize, k: f64) -> Bands {
    let middle = sma(close, period);
    let n = close.len();
    let (mut upper, mut lower) = (vec![f64::NAN; n], vec![f64::NAN; n]);
    for t in 0..n {
        if middle[t].is_nan() {
            continue;
        }
        let window = &close[t + 1 - period..=t];
        let var = window.iter().map(|x| (x - middle[t]).powi(2)).sum::<f64>() / period as f64;
        let sd = var.sqrt();
        upper[t] = middle[t] + k * sd;
        lower[t] = middle[t] - k * sd;
    }
    Bands { upper, middle, lower }
}

/// A Donchian channel, each the input's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    /// Highest high of the window.
    pub upper: Vec<f64>,
    /// Lowest low of the window.
    pub lower: Vec<f64>,
}

/// Donchian channel: highest high and lowest low of the last `period` bars including bar `t`. A breakout rule
/// compares today's close with *yesterday's* channel (`upper[t-1]`), since today's bar is inside its own.
pub fn donchian(high: &[f64], low: &[f64], period: usize) -> Channel {
    let n = high.len().min(low.len());
    let (mut upper, mut lower) = (vec![f64::NAN; n], vec![f64::NAN; n]);
    if period > 0 {
        for t in period - 1..n {
            let w = t + 1 - period..=t;
            upper[t] = high[w.clone()].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            lower[t] = low[w].iter().copied().fold(f64::INFINITY, f64::min);
        }
    }
    Channel { upper, lower }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::reference_values as rv;
    use crate::indicators::test_support::{CLOSE, assert_series, high, low};

    #[test]
    fn bollinger_matches_pandas() {
        let b = bollinger(&CLOSE, 20, 2.0);
        assert_series(&b.middle, &rv::BB_MID, 1e-12);
        assert_series(&b.upper, &rv::BB_UPPER, 1e-12);
        assert_series(&b.lower, &rv::BB_LOWER, 1e-12);
    }

    #[test]
    fn bollinger_by_hand() {
        // window [1, 3]: mean 2, population sd 1 -> bands 0 and 4 at k = 2
        let b = bollinger(&[1.0, 3.0], 2, 2.0);
        assert_eq!((b.lower[1], b.middle[1], b.upper[1]), (0.0, 2.0, 4.0));
        assert!(b.middle[0].is_nan());
    }

    #[test]
    fn donchian_matches_pandas() {
        let c = donchian(&high(), &low(), 10);
        assert_series(&c.upper, &rv::DONCHIAN_UPPER10, 0.0);
        assert_series(&c.lower, &rv::DONCHIAN_LOWER10, 0.0);
        assert!(donchian(&[1.0], &[1.0], 0).upper[0].is_nan());
    }
}
