//! Time-ordered splits: one in-sample/out-of-sample split, and walk-forward analysis.

use serde::Serialize;

use super::Trials;
use crate::backtest::BacktestError;

/// Result of one IS/OOS split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IsOos {
    /// Bars in sample (the first part).
    pub is_bars: usize,
    /// Trial chosen on the in-sample part.
    pub chosen: usize,
    /// Its annualised in-sample Sharpe.
    pub is_sharpe: f64,
    /// Its annualised out-of-sample Sharpe.
    pub oos_sharpe: f64,
    /// `1 - OOS / IS` (share of the in-sample Sharpe lost out of sample); 1 when the in-sample Sharpe is not
    /// positive (nothing to keep).
    pub degradation: f64,
}

/// Chooses the best trial on the first `is_fraction` of the bars and measures it on the rest.
pub fn is_oos(trials: &Trials, is_fraction: f64) -> Result<IsOos, BacktestError> {
    let t = trials.bars();
    let cut = (t as f64 * is_fraction).floor() as usize;
    if !(is_fraction > 0.0 && is_fraction < 1.0) || cut < 2 || t - cut < 2 {
        return Err(BacktestError::Grid(format!(
            "is-oos: fraction {is_fraction} of {t} bars leaves a side under 2 bars"
        )));
    }
    let chosen = trials.best(&[0..cut]);
    let (is_sharpe, oos_sharpe) = (trials.sharpe(chosen, &[0..cut]), trials.sharpe(chosen, &[cut..t]));
    let degradation = if is_sharpe > 0.0 { 1.0 - oos_sharpe / is_sharpe } else { 1.0 };
    Ok(IsOos { is_bars: cut, chosen, is_sharpe, oos_sharpe, degradation })
}

/// One walk-forward window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fold {
    /// In-sample bars.
    pub is_range: (usize, usize),
    /// Out-of-sample bars.
    pub oos_range: (usize, usize),
    /// Trial chosen in sample.
    pub chosen: usize,
    /// Its annualised in-sample Sharpe.
    pub is_sharpe: f64,
    /// Its annualised out-of-sample Sharpe.
    pub oos_sharpe: f64,
    /// Its compounded out-of-sample return (fraction).
    pub oos_return: f64,
}

/// Result of a walk-forward analysis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WalkForward {
    /// The windows, in time order.
    pub folds: Vec<Fold>,
    /// Annualised Sharpe of the stitched out-of-sample returns.
    pub oos_sharpe: f64,
    /// Compounded return of the stitched out-of-sample returns (fraction).
    pub oos_return: f64,
    /// Share of windows whose out-of-sample return is positive.
    pub consistency: f64,
    /// Mean OOS Sharpe / mean IS Sharpe of the chosen trials (walk-forward efficiency).
    pub efficiency: Option<f64>,
}

/// Rolling walk-forward: the bars are cut into `folds + is_ratio` equal segments; window `i` optimises on
/// segments `i..i+is_ratio` and trades the chosen trial on segment `i+is_ratio`. The out-of-sample segments are
/// stitched into one return series.
pub fn walk_forward(trials: &Trials, folds: usize, is_ratio: usize) -> Result<WalkForward, BacktestError> {
    let t = trials.bars();
    let segments = folds + is_ratio;
    if folds == 0 || is_ratio == 0 || t / segments.max(1) < 2 {
        return Err(BacktestError::Grid(format!("wfa: {folds} folds x IS ratio {is_ratio} do not fit {t} bars")));
    }
    let seg = t / segments;
    let mut out = Vec::with_capacity(folds);
    let mut stitched = Vec::new();
    for i in 0..folds {
        let is_r = i * seg..(i + is_ratio) * seg;
        // the last window runs to the end, so no bar is dropped
        let oos_end = if i + 1 == folds { t } else { (i + is_ratio + 1) * seg };
        let oos_r = (i + is_ratio) * seg..oos_end;
        let chosen = trials.best(std::slice::from_ref(&is_r));
        let oos = &trials.returns(chosen)[oos_r.clone()];
        stitched.push(oos_r.clone());
        out.push(Fold {
            is_range: (is_r.start, is_r.end),
            oos_range: (oos_r.start, oos_r.end),
            chosen,
            is_sharpe: trials.sharpe(chosen, std::slice::from_ref(&is_r)),
            oos_sharpe: trials.sharpe(chosen, std::slice::from_ref(&oos_r)),
            oos_return: compound(oos),
        });
    }
    let returns: Vec<f64> =
        out.iter().flat_map(|f| trials.returns(f.chosen)[f.oos_range.0..f.oos_range.1].iter().copied()).collect();
    let stitched_trials = Trials::new(vec![returns.clone()], trials.bars_per_year())?;
    let oos_sharpe = stitched_trials.sharpe(0, &[0..returns.len()]);
    let consistency = out.iter().filter(|f| f.oos_return > 0.0).count() as f64 / folds as f64;
    let mean = |v: &mut dyn Iterator<Item = f64>| v.sum::<f64>() / folds as f64;
    let (m_is, m_oos) = (mean(&mut out.iter().map(|f| f.is_sharpe)), mean(&mut out.iter().map(|f| f.oos_sharpe)));
    Ok(WalkForward {
        oos_sharpe,
        oos_return: compound(&returns),
        consistency,
        efficiency: (m_is > 0.0).then(|| m_oos / m_is),
        folds: out,
    })
}

/// Compounded return of per-bar returns.
pub fn compound(r: &[f64]) -> f64 {
    r.iter().fold(1.0, |acc, x| acc * (1.0 + x)) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::validation::test_matrix::matrix;

    #[test]
    fn a_real_edge_survives_out_of_sample() {
        // trial 9 has the biggest mean return everywhere: chosen in sample, still good out of sample
        // trials 8 and 9 are close (per-bar Sharpe 0.045 vs 0.05): either may win a window
        let tr = Trials::new(matrix(10, 5000, 0.0005, 1), 252.0).unwrap();
        let r = is_oos(&tr, 0.7).unwrap();
        assert!(r.chosen >= 8);
        assert!(r.oos_sharpe > 5.0 && r.degradation < 0.3, "{r:?}");
        let w = walk_forward(&tr, 5, 4).unwrap();
        assert!(w.folds.iter().all(|f| f.chosen >= 8), "{w:?}");
        assert!(w.oos_sharpe > 5.0 && w.consistency == 1.0);
        assert_eq!(w.folds.last().unwrap().oos_range.1, 5000);
        assert_eq!(w.folds[0].oos_range, (2220, 2775), "5000 bars in 9 segments of 555");
    }

    #[test]
    fn noise_degrades() {
        // over 20 seeds: the in-sample winner of 50 noise trials always looks good and usually falls apart
        let mut degraded = 0;
        let mut oos_sharpes = Vec::new();
        for seed in 0..20 {
            let tr = Trials::new(matrix(50, 5000, 0.0, seed), 8760.0).unwrap();
            let r = is_oos(&tr, 0.7).unwrap();
            assert!(r.is_sharpe > 1.0, "the best of 50 noise trials looks good in sample: {r:?}");
            degraded += usize::from(r.degradation > 0.3);
            oos_sharpes.push(walk_forward(&tr, 5, 4).unwrap().oos_sharpe);
        }
        assert!(degraded >= 15, "{degraded} of 20");
        let mean = oos_sharpes.iter().sum::<f64>() / 20.0;
        assert!(mean.abs() < 0.7, "stitched OOS Sharpe of noise averages about 0: {oos_sharpes:?}");
    }

    #[test]
    fn rejects_splits_that_do_not_fit() {
        let tr = Trials::new(matrix(2, 10, 0.0, 3), 252.0).unwrap();
        assert!(is_oos(&tr, 1.0).is_err());
        assert!(walk_forward(&tr, 5, 4).is_err());
        assert!(walk_forward(&tr, 0, 4).is_err());
        assert!((compound(&[0.1, -0.1]) - (1.1 * 0.9 - 1.0)).abs() < 1e-15);
    }
}
