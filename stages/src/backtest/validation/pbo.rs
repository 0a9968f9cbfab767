//! Probability of backtest overfitting by combinatorially symmetric cross-validation (CSCV; Bailey, Borwein,
//! López de Prado, Zhu, "The probability of backtest overfitting", 2015).
//!
//! The bars are cut into `S` blocks; for every choice of `S/2` blocks as in-sample (the rest out-of-sample) the
//! trial with the best in-sample Sharpe is found and its out-of-sample Sharpe ranked among all trials'. PBO is
//! the share of choices where it ranks at or below the median: how often picking the in-sample winner picks a
//! below-average strategy.

use serde::Serialize;

use super::{Moments, Trials};
use crate::backtest::BacktestError;

/// PBO and companions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pbo {
    /// Probability of backtest overfitting, 0..1 (lower is better).
    pub pbo: f64,
    /// Number of in-sample/out-of-sample choices evaluated.
    pub splits: usize,
    /// Mean logit of the chosen trial's relative out-of-sample rank (positive: it tends to stay above median).
    pub mean_logit: f64,
    /// Share of choices where the chosen trial lost money out of sample (negative OOS Sharpe).
    pub prob_oos_loss: f64,
}

/// Relative rank `w` in (0, 1) of `value` among `all` (ties count half), and its logit `ln(w / (1 - w))`.
pub(crate) fn rank_logit(value: f64, all: &[f64], chosen: usize) -> f64 {
    let (mut below, mut ties) = (0.0, 0.0);
    for (j, v) in all.iter().enumerate() {
        if j != chosen {
            if *v < value {
                below += 1.0;
            } else if *v == value {
                ties += 0.5;
            }
        }
    }
    let w = (below + ties + 1.0) / (all.len() as f64 + 1.0);
    (w / (1.0 - w)).ln()
}

/// PBO by CSCV over `blocks` blocks (even, 2..=20; 16 gives 12 870 splits).
pub fn pbo(trials: &Trials, blocks: usize) -> Result<Pbo, BacktestError> {
    let (n, t) = (trials.len(), trials.bars());
    if n < 2 {
        return Err(BacktestError::Grid("PBO compares trials: sweep at least 2 parameter combinations".into()));
    }
    if blocks < 2 || blocks % 2 == 1 || blocks > 20 || t < blocks * 2 {
        return Err(BacktestError::Grid(format!(
            "PBO: {blocks} blocks must be even, 2..=20, with 2+ bars each ({t} bars)"
        )));
    }
    let edges: Vec<usize> = (0..=blocks).map(|b| if b == blocks { t } else { b * (t / blocks) }).collect();
    let block_moments: Vec<Vec<Moments>> =
        (0..n).map(|i| (0..blocks).map(|b| trials.moments(i, &[edges[b]..edges[b + 1]])).collect()).collect();
    let add = |a: Moments, b: &Moments| Moments { n: a.n + b.n, sum: a.sum + b.sum, sum_sq: a.sum_sq + b.sum_sq };
    let (mut overfit, mut splits, mut logit_sum, mut losses) = (0usize, 0usize, 0.0, 0usize);
    let mut oos = vec![0.0; n];
    for mask in 0u32..(1u32 << blocks) {
        if mask.count_ones() as usize != blocks / 2 {
            continue;
        }
        let (mut best, mut best_is) = (0, f64::NEG_INFINITY);
        for (i, bm) in block_moments.iter().enumerate() {
            let (is, os) = bm.iter().enumerate().fold((Moments::default(), Moments::default()), |(is, os), (b, m)| {
                if mask & (1 << b) != 0 { (add(is, m), os) } else { (is, add(os, m)) }
            });
            oos[i] = os.sharpe();
            if is.sharpe() > best_is {
                (best, best_is) = (i, is.sharpe());
            }
        }
        let logit = rank_logit(oos[best], &oos, best);
        splits += 1;
        logit_sum += logit;
        overfit += usize::from(logit <= 0.0);
        losses += usize::from(oos[best] < 0.0);
    }
    Ok(Pbo {
        pbo: overfit as f64 / splits as f64,
        splits,
        mean_logit: logit_sum / splits as f64,
        prob_oos_loss: losses as f64 / splits as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::validation::test_matrix::matrix;

    #[test]
    fn noise_overfits_about_half_the_time() {
        let tr = Trials::new(matrix(40, 4000, 0.0, 7), 252.0).unwrap();
        let p = pbo(&tr, 16).unwrap();
        assert_eq!(p.splits, 12_870);
        assert!((0.3..0.7).contains(&p.pbo), "{p:?}");
    }

    #[test]
    fn a_persistent_ranking_does_not_overfit() {
        let tr = Trials::new(matrix(20, 4000, 0.0003, 8), 252.0).unwrap();
        let p = pbo(&tr, 10).unwrap();
        assert!(p.pbo < 0.05 && p.mean_logit > 1.0 && p.prob_oos_loss == 0.0, "{p:?}");
    }

    #[test]
    fn ranks_by_hand() {
        // 0.5 is above 0.1 and 0.2, below 0.9: rank 3 of 4 -> w = 3/5 -> logit ln(1.5)
        assert!((rank_logit(0.5, &[0.1, 0.5, 0.2, 0.9], 1) - 1.5f64.ln()).abs() < 1e-15);
        let tr = Trials::new(matrix(1, 100, 0.0, 1), 252.0).unwrap();
        assert!(pbo(&tr, 4).is_err());
        let tr = Trials::new(matrix(2, 100, 0.0, 1), 252.0).unwrap();
        assert!(pbo(&tr, 3).is_err());
    }
}
