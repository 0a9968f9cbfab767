//! Indicators over f64 series (the only place floats are allowed): each is a plain function, tested against
//! hand-computed values.

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
}
