//! Health monitors: statistics that tell, from what the bot recorded, that something drifted before the owner
//! loses money to it. Pure functions over numbers (f64: these are statistics, not money), so each is tested on
//! series where the right answer is known; the health job feeds them from the store and raises one event when a
//! monitor starts firing and one when it stops.
//!
//! - [`drift`]: Page-Hinkley for a shift in the mean of live returns; the two-sample Kolmogorov-Smirnov test of
//!   live returns against the backtest's.
//! - [`drawdown`]: the 95 % bounds of drawdown depth and duration of a geometric Brownian motion fitted to the
//!   backtest's daily returns, and the live drawdown measured against them.
//! - [`execution`]: slippage, fill latency and fees of the last hour against their limits.
//! - [`process`]: runtime lag, memory and open descriptors against their limits.
//! - [`returns`]: the drawdown, drift and distribution monitors together, on daily returns.

pub mod drawdown;
pub mod drift;
pub mod execution;
pub mod process;
pub mod returns;

use serde::Serialize;

/// How loud a firing monitor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Worth a look.
    Warning,
    /// Act now.
    Critical,
}

/// One monitor's verdict: `key` names the condition (raised once while it holds, cleared once after).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Stable condition key, e.g. `monitor:slippage_p95`.
    pub key: String,
    /// How loud.
    pub level: Level,
    /// What was measured against what, in words.
    pub message: String,
}

impl Finding {
    /// A finding for condition `key`.
    pub fn new(key: &str, level: Level, message: String) -> Self {
        Self { key: format!("monitor:{key}"), level, message }
    }
}

/// The `q` quantile (0..=1) of `xs` by linear interpolation between order statistics (numpy's default), `None`
/// for an empty sample.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_like_numpy() {
        // numpy.quantile([1, 2, 3, 4, 10], 0.95) = 8.8
        assert!((quantile(&[10.0, 2.0, 3.0, 1.0, 4.0], 0.95).unwrap() - 8.8).abs() < 1e-12);
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7.0], 0.95), Some(7.0));
    }
}

/// Each monitor against answers computed independently (testdata/expected.py: scipy, numpy Monte Carlo and a
/// textbook Page-Hinkley, committed with its output testdata/monitors.json).
#[cfg(test)]
mod independent {
    use super::drawdown::{Gbm, max_drawdown};
    use super::drift::{ks_two_sample, page_hinkley};
    use super::{Level, process, returns};
    use serde_json::Value;

    fn expected() -> Value {
        serde_json::from_str(include_str!("testdata/monitors.json")).expect("testdata/monitors.json is JSON")
    }

    fn series(v: &Value, key: &str) -> Vec<f64> {
        v[key].as_array().unwrap_or_else(|| panic!("{key} missing")).iter().map(|x| x.as_f64().unwrap()).collect()
    }

    fn num(v: &Value, path: &[&str]) -> f64 {
        path.iter().fold(v, |v, k| &v[*k]).as_f64().unwrap_or_else(|| panic!("{path:?} missing"))
    }

    #[test]
    fn kolmogorov_smirnov_matches_scipy() {
        let e = expected();
        let reference = series(&e, "reference");
        for (sample, key) in [("same", "ks_same"), ("different", "ks_different")] {
            let ks = ks_two_sample(&series(&e, sample), &reference).unwrap();
            assert!((ks.statistic - num(&e, &[key, "statistic"])).abs() < 1e-12, "{key}: {ks:?}");
            // The limiting law with Stephens' correction, exactly as scipy's kstwobign computes it; scipy's own
            // default (the exact one-sample law at the effective size) differs by about 0.01.
            assert!((ks.p_value - num(&e, &[key, "p_stephens"])).abs() < 1e-9, "{key}: {ks:?} vs {}", e[key]);
            assert!((ks.p_value - num(&e, &[key, "p_value"])).abs() < 0.02, "{key}: {ks:?} vs {}", e[key]);
        }
        assert!(ks_two_sample(&series(&e, "same"), &reference).unwrap().p_value > 0.05);
        assert!(ks_two_sample(&series(&e, "different"), &reference).unwrap().p_value < 0.05);
    }

    #[test]
    fn page_hinkley_finds_the_planted_shift_where_the_textbook_does() {
        let e = expected();
        assert_eq!(page_hinkley(&series(&e, "steady"), 0.25, 10.0), None);
        let at = page_hinkley(&series(&e, "shifted"), 0.25, 10.0);
        assert_eq!(at, Some(num(&e, &["ph_shifted"]) as usize));
        assert!(at.is_some_and(|i| i >= 100), "not before the shift at 100");
    }

    #[test]
    fn gbm_drawdown_bounds_match_a_large_monte_carlo() {
        let e = expected();
        let gbm = Gbm::fit(&series(&e, "reference")).unwrap();
        assert!((gbm.mu - num(&e, &["gbm_120_days", "mu"])).abs() < 1e-12);
        assert!((gbm.sigma - num(&e, &["gbm_120_days", "sigma"])).abs() < 1e-12);
        let bound = gbm.bound(120, 0.95, 4000, 1);
        let depth = num(&e, &["gbm_120_days", "depth"]);
        assert!((bound.depth / depth - 1.0).abs() < 0.05, "{bound:?} vs depth {depth}");
        let days = num(&e, &["gbm_120_days", "days"]);
        assert!((bound.days as f64 - days).abs() <= 3.0, "{bound:?} vs {days} days");
        let d = max_drawdown(&[1.0, 1.2, 0.9, 1.0, 1.3, 1.1]);
        assert!((d.depth - 0.25).abs() < 1e-12 && d.days == 2, "{d:?}");
    }

    #[test]
    fn return_monitors_stay_quiet_on_the_backtests_own_behaviour_and_fire_on_each_planted_fault() {
        let e = expected();
        let (reference, same) = (series(&e, "reference"), series(&e, "same"));
        let limits = returns::ReturnLimits::default();
        let keys =
            |live: &[f64]| returns::evaluate(&reference, live, &limits).into_iter().map(|f| f.key).collect::<Vec<_>>();
        assert!(keys(&same).is_empty(), "{:?}", returns::evaluate(&reference, &same, &limits));
        assert!(keys(&same[..10]).is_empty(), "too little history says nothing");
        // A 45 % fall over a week, far beyond the 95 % bound of about 25 %.
        let mut crash = same.clone();
        crash.extend([-0.08; 7]);
        assert!(keys(&crash).contains(&"monitor:drawdown_depth".to_owned()), "{:?}", keys(&crash));
        assert!(keys(&series(&e, "different")).contains(&"monitor:return_distribution".to_owned()));
        // The planted mean shift, in units of the reference's daily returns.
        let sd = gbm_sd(&reference);
        let shifted: Vec<f64> = series(&e, "shifted").iter().map(|z| 0.003 + z * sd).collect();
        assert!(keys(&shifted).contains(&"monitor:return_shift".to_owned()), "{:?}", keys(&shifted));
    }

    fn gbm_sd(xs: &[f64]) -> f64 {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    }

    #[test]
    fn process_limits_apply_at_their_values() {
        let l = process::ProcessLimits::default();
        let ok = process::ProcessSample { runtime_lag_secs: 1.0, rss_bytes: Some(l.rss_bytes), open_fds: Some(512) };
        assert!(process::evaluate(&ok, &l).is_empty());
        let bad =
            process::ProcessSample { runtime_lag_secs: 1.5, rss_bytes: Some(l.rss_bytes + 1), open_fds: Some(513) };
        let f = process::evaluate(&bad, &l);
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f.iter().all(|f| f.level == Level::Warning));
    }
}
