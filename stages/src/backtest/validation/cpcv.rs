//! Combinatorial purged cross-validation (López de Prado, "Advances in Financial Machine Learning", ch. 12).
//!
//! The bars are cut into `N` groups; every choice of `k` test groups is one split. The in-sample winner is
//! chosen on the other groups, after *purging* `purge` bars on each side of every test group (a position opened
//! just before a test group earns inside it) and *embargoing* `embargo` more bars after it (serial correlation).
//! Each group is tested in `C(N-1, k-1)` splits, so the test results re-assemble into that many complete
//! out-of-sample backtest paths: a distribution of Sharpe ratios instead of the single number of a walk-forward.

use std::ops::Range;

use serde::Serialize;

use super::pbo::rank_logit;
use super::{Moments, Settings, Trials};
use crate::backtest::BacktestError;

/// CPCV results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cpcv {
    /// Number of splits, `C(N, k)`.
    pub splits: usize,
    /// Purge applied, in bars.
    pub purge: usize,
    /// Embargo applied, in bars.
    pub embargo: usize,
    /// Annualised Sharpe of each re-assembled out-of-sample path (`C(N-1, k-1)` of them).
    pub path_sharpes: Vec<f64>,
    /// Mean of `path_sharpes`.
    pub mean_path_sharpe: f64,
    /// Worst path.
    pub min_path_sharpe: f64,
    /// Share of splits whose in-sample winner ranked at or below the median out of sample (PBO over CPCV).
    pub pbo: f64,
}

fn combinations(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur = Vec::with_capacity(k);
    fn rec(start: usize, n: usize, k: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(i);
            rec(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    rec(0, n, k, &mut cur, &mut out);
    out
}

/// Runs CPCV with `settings.cpcv_groups`, `cpcv_test_groups`, `purge` and `embargo`.
pub fn cpcv(trials: &Trials, settings: &Settings) -> Result<Cpcv, BacktestError> {
    let (n_groups, k) = (settings.cpcv_groups, settings.cpcv_test_groups);
    let t = trials.bars();
    if n_groups < 2 || k == 0 || k >= n_groups || n_groups > 16 || t < n_groups * 4 {
        return Err(BacktestError::Grid(format!(
            "cpcv: need 0 < k ({k}) < N ({n_groups}) <= 16 and 4+ bars per group"
        )));
    }
    if trials.len() < 2 {
        return Err(BacktestError::Grid("cpcv selects among trials: sweep at least 2 parameter combinations".into()));
    }
    let one_pct = t / 100;
    let (purge, embargo) = (settings.purge.unwrap_or(one_pct), settings.embargo.unwrap_or(one_pct));
    let edges: Vec<usize> = (0..=n_groups).map(|g| if g == n_groups { t } else { g * (t / n_groups) }).collect();
    let group = |g: usize| edges[g]..edges[g + 1];
    let splits = combinations(n_groups, k);
    // per group, the trial chosen in each split that tests it, in split order
    let mut tested: Vec<Vec<usize>> = vec![Vec::new(); n_groups];
    let mut overfit = 0usize;
    let mut oos = vec![0.0; trials.len()];
    for test in &splits {
        let mut keep = vec![true; t];
        for &g in test {
            let r = group(g);
            let from = r.start.saturating_sub(purge);
            let to = (r.end + purge + embargo).min(t);
            keep[from..to].iter_mut().for_each(|b| *b = false);
        }
        let train = runs(&keep);
        if train.iter().map(Range::len).sum::<usize>() < 2 {
            return Err(BacktestError::Grid(format!("cpcv: purge {purge} + embargo {embargo} leave no training bars")));
        }
        let chosen = trials.best(&train);
        let test_ranges: Vec<Range<usize>> = test.iter().map(|&g| group(g)).collect();
        for (i, o) in oos.iter_mut().enumerate() {
            *o = trials.moments(i, &test_ranges).sharpe();
        }
        overfit += usize::from(rank_logit(oos[chosen], &oos, chosen) <= 0.0);
        for &g in test {
            tested[g].push(chosen);
        }
    }
    let paths = tested[0].len(); // C(N-1, k-1), the same for every group
    let ann = trials.bars_per_year().sqrt();
    let path_sharpes: Vec<f64> = (0..paths)
        .map(|p| {
            let m = (0..n_groups).fold(Moments::default(), |acc, g| {
                let m = trials.moments(tested[g][p], &[group(g)]);
                Moments { n: acc.n + m.n, sum: acc.sum + m.sum, sum_sq: acc.sum_sq + m.sum_sq }
            });
            m.sharpe() * ann
        })
        .collect();
    let mean_path_sharpe = path_sharpes.iter().sum::<f64>() / paths as f64;
    let min_path_sharpe = path_sharpes.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(Cpcv {
        splits: splits.len(),
        purge,
        embargo,
        path_sharpes,
        mean_path_sharpe,
        min_path_sharpe,
        pbo: overfit as f64 / splits.len() as f64,
    })
}

/// Maximal runs of `true` as ranges.
fn runs(mask: &[bool]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &m) in mask.iter().chain(std::iter::once(&false)).enumerate() {
        match (m, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::validation::test_matrix::matrix;

    #[test]
    fn combinatorics_and_runs() {
        assert_eq!(combinations(6, 2).len(), 15);
        assert_eq!(combinations(4, 2)[0], vec![0, 1]);
        assert_eq!(runs(&[true, true, false, true, false]), vec![0..2, 3..4]);
    }

    #[test]
    fn paths_and_purging() {
        let tr = Trials::new(matrix(10, 6000, 0.0003, 5), 252.0).unwrap();
        let s = Settings { purge: Some(50), embargo: Some(20), ..Default::default() };
        let c = cpcv(&tr, &s).unwrap();
        // N = 6, k = 2: 15 splits, C(5, 1) = 5 paths
        assert_eq!((c.splits, c.path_sharpes.len(), c.purge, c.embargo), (15, 5, 50, 20));
        assert!(c.min_path_sharpe > 3.0 && c.pbo == 0.0, "{c:?}");
        let noise = cpcv(&Trials::new(matrix(30, 6000, 0.0, 6), 252.0).unwrap(), &Settings::default()).unwrap();
        assert!(noise.mean_path_sharpe < 1.0 && noise.pbo > 0.2, "{noise:?}");
        let too_much = Settings { purge: Some(3000), ..Default::default() };
        assert!(cpcv(&tr, &too_much).is_err());
    }
}
