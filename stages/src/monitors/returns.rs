//! The return monitors together: live daily returns against the backtest's, by drawdown bounds, a mean shift and
//! the distribution.

use serde::{Deserialize, Serialize};

use super::drawdown::{Gbm, max_drawdown};
use super::drift::{ks_two_sample, page_hinkley};
use super::{Finding, Level};

/// Limits, as configured under `[monitors]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReturnLimits {
    /// Days of live returns needed before these monitors speak.
    pub min_days: usize,
    /// Confidence of the drawdown bounds.
    pub drawdown_confidence: f64,
    /// Page-Hinkley tolerance, in standard deviations of the backtest's daily returns.
    pub drift_delta_sd: f64,
    /// Page-Hinkley threshold, in standard deviations of the backtest's daily returns.
    pub drift_threshold_sd: f64,
    /// Days of recent live returns compared with the backtest's distribution.
    pub ks_window_days: usize,
    /// Kolmogorov-Smirnov p-value below which the distributions differ.
    pub ks_p_value: f64,
}

impl Default for ReturnLimits {
    fn default() -> Self {
        Self {
            min_days: 20,
            drawdown_confidence: 0.95,
            drift_delta_sd: 0.25,
            drift_threshold_sd: 10.0,
            ks_window_days: 60,
            ks_p_value: 0.05,
        }
    }
}

/// Simulated paths behind the drawdown bounds, and their seed.
const PATHS: usize = 4000;
const SEED: u64 = 0x006d_6362_6f74;

/// The findings of `live` daily returns against the backtest's `reference` daily returns; nothing until both have
/// `min_days` (too little evidence says nothing).
pub fn evaluate(reference: &[f64], live: &[f64], limits: &ReturnLimits) -> Vec<Finding> {
    let mut out = Vec::new();
    if reference.len() < limits.min_days || live.len() < limits.min_days {
        return out;
    }
    let Some(gbm) = Gbm::fit(reference) else { return out };
    let mut equity = Vec::with_capacity(live.len() + 1);
    equity.push(1.0);
    for r in live {
        equity.push(equity[equity.len() - 1] * (1.0 + r));
    }
    let seen = max_drawdown(&equity);
    let bound = gbm.bound(live.len(), limits.drawdown_confidence, PATHS, SEED);
    let pct = limits.drawdown_confidence * 100.0;
    if seen.depth > bound.depth {
        out.push(Finding::new(
            "drawdown_depth",
            Level::Warning,
            format!(
                "live drawdown {:.1}% beyond the backtest's {pct:.0}% bound of {:.1}% over {} days",
                seen.depth * 100.0,
                bound.depth * 100.0,
                live.len()
            ),
        ));
    }
    if seen.days > bound.days {
        out.push(Finding::new(
            "drawdown_duration",
            Level::Warning,
            format!("{} days under water, beyond the backtest's {pct:.0}% bound of {} days", seen.days, bound.days),
        ));
    }
    let (mean, sd) = mean_sd(reference);
    if sd > 0.0 {
        let z: Vec<f64> = live.iter().map(|r| (r - mean) / sd).collect();
        if let Some(day) = page_hinkley(&z, limits.drift_delta_sd, limits.drift_threshold_sd) {
            out.push(Finding::new(
                "return_shift",
                Level::Warning,
                format!(
                    "the mean of live daily returns shifted (Page-Hinkley, detected on day {} of {})",
                    day + 1,
                    z.len()
                ),
            ));
        }
    }
    let recent = &live[live.len().saturating_sub(limits.ks_window_days)..];
    if let Some(ks) = ks_two_sample(recent, reference).filter(|ks| ks.p_value < limits.ks_p_value) {
        out.push(Finding::new(
            "return_distribution",
            Level::Warning,
            format!(
                "the last {} days of live returns differ from the backtest's (KS D {:.3}, p {:.4} < {})",
                recent.len(),
                ks.statistic,
                ks.p_value,
                limits.ks_p_value
            ),
        ));
    }
    out
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}
