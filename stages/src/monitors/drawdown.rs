//! Is the live drawdown still the kind of bad luck the backtest allows? A geometric Brownian motion is fitted to
//! the backtest's daily returns (drift and volatility of log returns); simulated over as many days as the live
//! record covers, the 95th percentiles of its deepest drawdown and its longest time under water are the bounds a
//! live drawdown may reach before it is more than bad luck.

use crate::backtest::synthetic::Rng;

/// A geometric Brownian motion, per day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gbm {
    /// Mean daily log return.
    pub mu: f64,
    /// Standard deviation of daily log returns.
    pub sigma: f64,
}

/// Drawdown depth (a fraction of the peak) and duration (days under water).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drawdown {
    /// Deepest fall from a running peak, 0..1.
    pub depth: f64,
    /// Longest stretch, in days, below a running peak.
    pub days: usize,
}

impl Gbm {
    /// Fits drift and volatility to simple daily returns; `None` with fewer than two.
    pub fn fit(daily_returns: &[f64]) -> Option<Self> {
        let logs: Vec<f64> = daily_returns.iter().filter(|r| **r > -1.0).map(|r| r.ln_1p()).collect();
        if logs.len() < 2 {
            return None;
        }
        let n = logs.len() as f64;
        let mu = logs.iter().sum::<f64>() / n;
        let var = logs.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (n - 1.0);
        Some(Self { mu, sigma: var.sqrt() })
    }

    /// The `confidence` quantiles of drawdown depth and duration over `days` days, from `paths` simulated paths
    /// (seeded: the same inputs give the same bound).
    pub fn bound(&self, days: usize, confidence: f64, paths: usize, seed: u64) -> Drawdown {
        let mut rng = Rng::new(seed);
        let (mut depths, mut durations) = (Vec::with_capacity(paths), Vec::with_capacity(paths));
        let mut equity = Vec::with_capacity(days + 1);
        for _ in 0..paths {
            equity.clear();
            let mut log = 0.0;
            equity.push(1.0);
            for _ in 0..days {
                log += self.mu + self.sigma * rng.normal();
                equity.push(log.exp());
            }
            let d = max_drawdown(&equity);
            depths.push(d.depth);
            durations.push(d.days as f64);
        }
        let q = |v: &[f64]| super::quantile(v, confidence).unwrap_or(0.0);
        Drawdown { depth: q(&depths), days: q(&durations).round() as usize }
    }
}

/// The deepest drawdown of an equity curve (one value per day) and the longest time under a running peak.
pub fn max_drawdown(equity: &[f64]) -> Drawdown {
    let (mut peak, mut depth, mut under, mut longest) = (f64::MIN, 0.0_f64, 0, 0);
    for &e in equity {
        if e >= peak {
            peak = e;
            under = 0;
        } else {
            under += 1;
            longest = longest.max(under);
            depth = depth.max(1.0 - e / peak);
        }
    }
    Drawdown { depth, days: longest }
}
