//! The deflated Sharpe ratio (Bailey and López de Prado, "The Deflated Sharpe Ratio", 2014): the best of `N`
//! trials' Sharpe judged against the Sharpe the best of `N` skill-less trials would show by luck, with the
//! standard error widened for skewed and fat-tailed returns.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::statistics::Statistics;

use super::Trials;

/// Euler-Mascheroni constant, in the expected maximum of `N` normal draws.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Deflated Sharpe statistics of the full-sample best trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dsr {
    /// The trial with the best full-sample Sharpe.
    pub chosen: usize,
    /// Number of trials the best was selected from.
    pub trials: usize,
    /// Its annualised Sharpe.
    pub sharpe: f64,
    /// The annualised Sharpe the best of `trials` skill-less trials is expected to reach (`SR0`).
    pub expected_max_sharpe: f64,
    /// `sharpe - expected_max_sharpe`, annualised: the Sharpe left after deflating for selection. This is the
    /// number the verdict's "DSR > 1.0" threshold reads.
    pub deflated_sharpe: f64,
    /// Probability that the true Sharpe exceeds `SR0` (the paper's DSR, 0..1), with skew/kurtosis correction.
    pub probability: f64,
    /// Skewness of the chosen trial's returns.
    pub skew: f64,
    /// Kurtosis (not excess) of the chosen trial's returns.
    pub kurtosis: f64,
}

/// `SR0` per bar: `sqrt(V) x ((1 - g) Z(1 - 1/N) + g Z(1 - 1/(N e)))`, `V` the variance of the trials' per-bar
/// Sharpe ratios; 0 for a single trial (nothing was selected).
pub fn expected_max_sharpe(per_bar_sharpes: &[f64]) -> f64 {
    let n = per_bar_sharpes.len();
    if n < 2 {
        return 0.0;
    }
    let v = per_bar_sharpes.iter().copied().variance();
    let Ok(z) = Normal::new(0.0, 1.0) else { return 0.0 };
    let nf = n as f64;
    v.max(0.0).sqrt()
        * ((1.0 - EULER_GAMMA) * z.inverse_cdf(1.0 - 1.0 / nf)
            + EULER_GAMMA * z.inverse_cdf(1.0 - 1.0 / (nf * std::f64::consts::E)))
}

/// Computes the deflated Sharpe ratio of the best trial over all bars.
pub fn deflated_sharpe(trials: &Trials) -> Dsr {
    let t = trials.bars();
    let all = [0..t];
    let per_bar: Vec<f64> = (0..trials.len()).map(|i| trials.moments(i, &all).sharpe()).collect();
    let chosen = trials.best(&all);
    let sr = per_bar[chosen];
    let sr0 = expected_max_sharpe(&per_bar);
    let r = trials.returns(chosen);
    let (mean, sd) = (r.iter().copied().mean(), r.iter().copied().population_std_dev());
    let (skew, kurtosis) = if sd > 0.0 {
        let m = |k: i32| r.iter().map(|x| ((x - mean) / sd).powi(k)).sum::<f64>() / t as f64;
        (m(3), m(4))
    } else {
        (0.0, 3.0)
    };
    let denom = (1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr).max(1e-12).sqrt();
    let probability = Normal::new(0.0, 1.0).map_or(f64::NAN, |z| z.cdf((sr - sr0) * ((t - 1) as f64).sqrt() / denom));
    let ann = trials.bars_per_year().sqrt();
    Dsr {
        chosen,
        trials: trials.len(),
        sharpe: sr * ann,
        expected_max_sharpe: sr0 * ann,
        deflated_sharpe: (sr - sr0) * ann,
        probability,
        skew,
        kurtosis,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::validation::test_matrix::matrix;

    #[test]
    fn expected_max_of_normal_draws() {
        // V = 1 (sample variance of the two values -1, 1 is 2; use a set with variance 1): N = 100
        // -> 0.4228 x Z(0.99) + 0.5772 x Z(1 - 1/(100e)) = 0.4228 x 2.3263 + 0.5772 x 2.6806 = 2.5306
        let xs: Vec<f64> = (0..100).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let v = xs.iter().copied().variance();
        let got = expected_max_sharpe(&xs) / v.sqrt();
        assert!((got - 2.530_602_893_2).abs() < 1e-6, "{got}");
        assert_eq!(expected_max_sharpe(&[1.0]), 0.0);
    }

    #[test]
    fn noise_is_deflated_to_nothing_and_a_real_edge_is_not() {
        let noise = deflated_sharpe(&Trials::new(matrix(100, 5000, 0.0, 4), 8760.0).unwrap());
        assert!(noise.sharpe > 1.0, "the luckiest of 100 looks good: {noise:?}");
        assert!(noise.deflated_sharpe < 1.0 && noise.probability < 0.95, "{noise:?}");
        let edge = deflated_sharpe(&Trials::new(matrix(100, 5000, 0.00005, 4), 8760.0).unwrap());
        assert!(edge.chosen >= 95, "{edge:?}");
        assert!(edge.deflated_sharpe > 1.0 && edge.probability > 0.95, "{edge:?}");
    }

    #[test]
    fn the_probability_matches_a_hand_computation() {
        // one trial: SR0 = 0, so probability = Phi(SR sqrt(T-1) / sqrt(1 - g3 SR + (g4-1)/4 SR^2))
        let r = vec![0.01, -0.005, 0.02, 0.0, 0.015, -0.01, 0.005, 0.01];
        let d = deflated_sharpe(&Trials::new(vec![r.clone()], 1.0).unwrap());
        let t = r.len() as f64;
        let mean = r.iter().sum::<f64>() / t;
        let sd_s = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (t - 1.0)).sqrt();
        let sd_p = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / t).sqrt();
        let sr = mean / sd_s;
        let g3 = r.iter().map(|x| ((x - mean) / sd_p).powi(3)).sum::<f64>() / t;
        let g4 = r.iter().map(|x| ((x - mean) / sd_p).powi(4)).sum::<f64>() / t;
        let z = sr * (t - 1.0).sqrt() / (1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr).sqrt();
        let want = Normal::new(0.0, 1.0).unwrap().cdf(z);
        assert!((d.probability - want).abs() < 1e-9, "{} vs {want}", d.probability);
        assert!((d.sharpe - sr).abs() < 1e-9);
    }
}
