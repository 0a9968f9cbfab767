//! Is a backtest's edge real, or the best of many lucky tries? These methods work on the per-bar returns of
//! every combination of a parameter grid (a [`Trials`] matrix) and judge the *selection procedure* "pick the
//! combination with the best in-sample Sharpe":
//!
//! - [`split::is_oos`]: one in-sample/out-of-sample split and the Sharpe degradation between them;
//! - [`split::walk_forward`]: rolling in-sample optimisation, the chosen combination traded on the next
//!   out-of-sample window, windows stitched (OOS Sharpe, consistency across windows);
//! - [`cpcv::cpcv`]: combinatorial purged cross-validation (López de Prado): every choice of `k` test groups out
//!   of `N`, training data purged next to the test groups and embargoed after them; backtest paths re-assembled
//!   from the test groups, and the probability of overfitting across splits;
//! - [`pbo::pbo`]: probability of backtest overfitting by combinatorially symmetric cross-validation (Bailey,
//!   Borwein, López de Prado, Zhu 2015);
//! - [`dsr::deflated_sharpe`]: the deflated Sharpe ratio (Bailey, López de Prado 2014), the best Sharpe
//!   corrected for the number of trials and for non-normal returns;
//! - [`verdict`]: pass / caution / fail per configurable threshold.
//!
//! Returns are taken from one backtest of each combination over the whole series, sliced by window (the usual
//! practice for these statistics): a position open at a window boundary counts in both windows' returns.

// Windows are unions of bar ranges (`&[Range]`); a window of one range is `&[a..b]` on purpose, not a mistaken
// `vec![a..b]` for a list of indices.
#![allow(clippy::single_range_in_vec_init)]

pub mod cpcv;
pub mod dsr;
pub mod pbo;
pub mod split;
pub mod verdict;

use serde::{Deserialize, Serialize};

use super::BacktestError;

pub use verdict::{Status, Thresholds, Verdict, VerdictRow};

/// Per-bar returns of every trial (combination), all over the same bars, with prefix sums so the mean and
/// variance of any window cost O(1).
#[derive(Debug, Clone)]
pub struct Trials {
    returns: Vec<Vec<f64>>,
    sum: Vec<Vec<f64>>,
    sum_sq: Vec<Vec<f64>>,
    bars_per_year: f64,
}

impl Trials {
    /// Wraps `returns[trial][bar]`; every trial must cover the same number of bars (at least 2).
    pub fn new(returns: Vec<Vec<f64>>, bars_per_year: f64) -> Result<Self, BacktestError> {
        let t = returns.first().map_or(0, Vec::len);
        if returns.is_empty() || t < 2 || returns.iter().any(|r| r.len() != t) {
            return Err(BacktestError::Grid(
                "validation needs at least one trial and two bars, all trials of equal length".into(),
            ));
        }
        let prefix = |f: &dyn Fn(f64) -> f64| -> Vec<Vec<f64>> {
            returns
                .iter()
                .map(|r| {
                    let mut acc = 0.0;
                    std::iter::once(0.0)
                        .chain(r.iter().map(|x| {
                            acc += f(if x.is_finite() { *x } else { 0.0 });
                            acc
                        }))
                        .collect()
                })
                .collect()
        };
        let (sum, sum_sq) = (prefix(&|x| x), prefix(&|x| x * x));
        Ok(Self { returns, sum, sum_sq, bars_per_year })
    }

    /// Number of trials.
    pub fn len(&self) -> usize {
        self.returns.len()
    }

    /// Always false (construction requires a trial); here for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.returns.is_empty()
    }

    /// Number of bars.
    pub fn bars(&self) -> usize {
        self.returns[0].len()
    }

    /// Bars per year, for annualising.
    pub fn bars_per_year(&self) -> f64 {
        self.bars_per_year
    }

    /// Trial `i`'s returns.
    pub fn returns(&self, i: usize) -> &[f64] {
        &self.returns[i]
    }

    /// (count, sum, sum of squares) of trial `i` over the union of `ranges`.
    pub fn moments(&self, i: usize, ranges: &[std::ops::Range<usize>]) -> Moments {
        let (s, q) = (&self.sum[i], &self.sum_sq[i]);
        ranges.iter().fold(Moments::default(), |m, r| Moments {
            n: m.n + r.len(),
            sum: m.sum + (s[r.end] - s[r.start]),
            sum_sq: m.sum_sq + (q[r.end] - q[r.start]),
        })
    }

    /// Annualised Sharpe of trial `i` over `ranges` (0 when undefined, so a flat trial never wins a selection).
    pub fn sharpe(&self, i: usize, ranges: &[std::ops::Range<usize>]) -> f64 {
        self.moments(i, ranges).sharpe() * self.bars_per_year.sqrt()
    }

    /// The trial with the best Sharpe over `ranges` (lowest index on ties, so selection is deterministic).
    pub fn best(&self, ranges: &[std::ops::Range<usize>]) -> usize {
        (0..self.len())
            .map(|i| (i, self.moments(i, ranges).sharpe()))
            .fold((0, f64::NEG_INFINITY), |b, c| if c.1 > b.1 { c } else { b })
            .0
    }
}

/// Count, sum and sum of squares of some returns.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    /// Number of returns.
    pub n: usize,
    /// Their sum.
    pub sum: f64,
    /// Sum of their squares.
    pub sum_sq: f64,
}

impl Moments {
    /// Per-bar Sharpe (mean / sample sd), 0 when undefined.
    pub fn sharpe(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let n = self.n as f64;
        let mean = self.sum / n;
        let var = (self.sum_sq - self.sum * mean) / (n - 1.0);
        if var > 1e-300 { mean / var.sqrt() } else { 0.0 }
    }
}

/// Which validation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// One in-sample / out-of-sample split.
    IsOos,
    /// Walk-forward analysis.
    Wfa,
    /// Combinatorial purged cross-validation.
    Cpcv,
    /// All of the above.
    All,
}

impl std::str::FromStr for Method {
    type Err = BacktestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "is-oos" => Ok(Self::IsOos),
            "wfa" => Ok(Self::Wfa),
            "cpcv" => Ok(Self::Cpcv),
            "all" => Ok(Self::All),
            other => Err(BacktestError::Grid(format!("method {other:?}: expected is-oos, wfa, cpcv or all"))),
        }
    }
}

/// Settings of the methods (the thresholds are separate, in [`Thresholds`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// In-sample fraction of the IS/OOS split.
    pub is_fraction: f64,
    /// Walk-forward: number of out-of-sample windows.
    pub wfa_folds: usize,
    /// Walk-forward: in-sample window length as a multiple of the out-of-sample one.
    pub wfa_is_ratio: usize,
    /// CPCV: number of groups the bars are cut into.
    pub cpcv_groups: usize,
    /// CPCV: groups held out for testing in each split.
    pub cpcv_test_groups: usize,
    /// CPCV: bars removed from training on each side of a test group (positions span bars; default 1 % of bars).
    pub purge: Option<usize>,
    /// CPCV: further bars removed from training after each test group (default 1 % of bars).
    pub embargo: Option<usize>,
    /// PBO: number of blocks for combinatorially symmetric cross-validation (even).
    pub pbo_blocks: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            is_fraction: 0.7,
            wfa_folds: 5,
            wfa_is_ratio: 4,
            cpcv_groups: 6,
            cpcv_test_groups: 2,
            purge: None,
            embargo: None,
            pbo_blocks: 16,
        }
    }
}

/// Everything a validation found, plus its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Method run.
    pub method: Method,
    /// Trials (grid combinations) compared.
    pub trials: usize,
    /// Bars.
    pub bars: usize,
    /// IS/OOS result, when run.
    pub is_oos: Option<split::IsOos>,
    /// Walk-forward result, when run.
    pub wfa: Option<split::WalkForward>,
    /// CPCV result, when run.
    pub cpcv: Option<cpcv::Cpcv>,
    /// PBO by CSCV (all methods but CPCV alone, which has its own).
    pub pbo: Option<pbo::Pbo>,
    /// Deflated Sharpe ratio of the full-sample best trial.
    pub dsr: dsr::Dsr,
    /// Pass / caution / fail per threshold.
    pub verdict: Verdict,
}

/// Runs `method` over `trials` and judges it against `thresholds`.
pub fn validate(
    trials: &Trials,
    method: Method,
    settings: &Settings,
    thresholds: &Thresholds,
) -> Result<Report, BacktestError> {
    thresholds.validate()?;
    let want = |m: Method| method == m || method == Method::All;
    let is_oos = want(Method::IsOos).then(|| split::is_oos(trials, settings.is_fraction)).transpose()?;
    let wfa = want(Method::Wfa)
        .then(|| split::walk_forward(trials, settings.wfa_folds, settings.wfa_is_ratio))
        .transpose()?;
    let cpcv = want(Method::Cpcv).then(|| cpcv::cpcv(trials, settings)).transpose()?;
    let pbo = (method != Method::Cpcv).then(|| pbo::pbo(trials, settings.pbo_blocks)).transpose()?;
    let dsr = dsr::deflated_sharpe(trials);
    let verdict = verdict::judge(thresholds, is_oos.as_ref(), wfa.as_ref(), cpcv.as_ref(), pbo.as_ref(), &dsr);
    Ok(Report { method, trials: trials.len(), bars: trials.bars(), is_oos, wfa, cpcv, pbo, dsr, verdict })
}

#[cfg(test)]
pub(crate) mod test_matrix {
    //! Return matrices with known answers.
    use crate::backtest::synthetic::Rng;

    /// `n` trials of `t` iid normal returns (sd 1 %), plus a per-trial mean of `edge x trial index`.
    pub fn matrix(n: usize, t: usize, edge: f64, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = Rng::new(seed);
        (0..n).map(|i| (0..t).map(|_| 0.01 * rng.normal() + edge * i as f64).collect()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_and_sharpe_by_hand() {
        let tr = Trials::new(vec![vec![0.01, 0.03, -0.01, 0.05], vec![0.0; 4]], 4.0).unwrap();
        // window [0, 2): mean 0.02, sd 0.01414 -> per-bar 1.414, annualised x2
        assert!((tr.sharpe(0, &[0..2]) - 0.02 / 0.0002f64.sqrt() * 2.0).abs() < 1e-9);
        let m = tr.moments(0, &[0..1, 2..4]);
        assert_eq!(m.n, 3);
        assert!((m.sum - 0.05).abs() < 1e-15);
        assert_eq!(tr.sharpe(1, &[0..4]), 0.0, "flat trial: undefined -> 0");
        assert_eq!(tr.best(&[0..4]), 0);
        assert!(Trials::new(vec![vec![0.0], vec![0.0]], 1.0).is_err());
        assert!(Trials::new(vec![vec![0.0, 1.0], vec![0.0]], 1.0).is_err());
    }
}

#[cfg(test)]
mod known_answers {
    //! End to end through the sweep engine: SMA-crossover grids on synthetic series with known answers.
    use std::collections::BTreeMap;

    use super::*;
    use crate::backtest::config::SimConfig;
    use crate::backtest::metrics::returns;
    use crate::backtest::sweep::{ParamRange, evaluate, grid};
    use crate::backtest::synthetic::{SeriesSpec, ohlcv};

    fn report(spec: &SeriesSpec) -> Report {
        // fast windows trade (and pay fees) more: the grid has a persistent ranking when trends are real
        report_grid(spec, &["fast=2..8:2", "slow=40..200:40"])
    }

    fn report_grid(spec: &SeriesSpec, grid_spec: &[&str]) -> Report {
        let bars = ohlcv(spec);
        let tf: crate::domain::Timeframe = "1h".parse().unwrap();
        let ranges: Vec<ParamRange> = grid_spec.iter().map(|r| r.parse().unwrap()).collect();
        let combos = grid(&BTreeMap::new(), &ranges);
        let rets: Vec<Vec<f64>> =
            evaluate(&bars, "sma-cross", &combos, &SimConfig::default(), tf, |s| returns(&s.equity, s.init_cash))
                .into_iter()
                .filter_map(Result::ok)
                .collect();
        let trials = Trials::new(rets, tf.bars_per_year()).unwrap();
        validate(&trials, Method::All, &Settings::default(), &Thresholds::default()).unwrap()
    }

    #[test]
    fn pure_noise_fails() {
        for seed in 21..26 {
            let r = report(&SeriesSpec { bars: 20_000, seed, vol: 0.01, ..Default::default() });
            assert_eq!(r.verdict.overall, Status::Fail, "seed {seed}: {:#?}", r.verdict);
            let pbo = r.pbo.as_ref().map_or(0.0, |p| p.pbo);
            assert!(pbo > 0.3 || r.dsr.deflated_sharpe < 1.0, "seed {seed}: the overfitting statistics must catch it");
        }
    }

    #[test]
    fn a_planted_edge_passes() {
        for seed in 21..25 {
            // trends of +-0.2 %/bar against 1 % noise, flipping every 500 bars on average
            let spec = SeriesSpec { bars: 20_000, seed, vol: 0.01, trend: 0.002, regime: 500.0, ..Default::default() };
            let r = report(&spec);
            assert_eq!(r.verdict.overall, Status::Pass, "seed {seed}: {:#?}", r.verdict);
            assert_eq!(r.verdict.rows.len(), 7, "every method ran");
        }
    }
}
