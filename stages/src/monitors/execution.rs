//! Execution quality over the last hour: how far fills landed from the price orders were sized at, how long the
//! venue took to fill them, and what the fees cost, against limits. A single extreme fill is critical at once; a
//! bad 95th percentile is a warning.

use serde::{Deserialize, Serialize};

use super::{Finding, Level, quantile};

/// Limits, as configured under `[monitors]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionLimits {
    /// 95th percentile of adverse slippage, in basis points, above which a warning is raised.
    pub slippage_p95_bps: f64,
    /// A single fill's adverse slippage, in basis points, above which it is critical.
    pub slippage_max_bps: f64,
    /// 95th percentile of order-to-fill latency, in seconds, above which a warning is raised.
    pub latency_p95_secs: f64,
    /// A single fill's latency, in seconds, above which it is critical.
    pub latency_max_secs: f64,
    /// Fees of the last hour, in % of equity, above which a warning is raised.
    pub fees_per_hour_pct: f64,
}

impl Default for ExecutionLimits {
    fn default() -> Self {
        Self {
            slippage_p95_bps: 15.0,
            slippage_max_bps: 30.0,
            latency_p95_secs: 5.0,
            latency_max_secs: 10.0,
            fees_per_hour_pct: 0.1,
        }
    }
}

/// What the last hour's fills measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionSample {
    /// Adverse slippage of each fill against its order's sizing price, in basis points (negative: better).
    pub slippage_bps: Vec<f64>,
    /// Seconds from each order's creation to its fill.
    pub latency_secs: Vec<f64>,
    /// Fees paid, in % of equity.
    pub fees_pct_of_equity: f64,
}

/// The findings of `sample` against `limits`: at most one per measure, critical before warning.
pub fn evaluate(sample: &ExecutionSample, limits: &ExecutionLimits) -> Vec<Finding> {
    let mut out = Vec::new();
    let max = |xs: &[f64]| {
        xs.iter().copied().filter(|x| x.is_finite()).fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
    };
    let mut measure = |key: &str, xs: &[f64], p95_limit: f64, max_limit: f64, unit: &str| {
        if let Some(m) = max(xs).filter(|m| *m > max_limit) {
            out.push(Finding::new(key, Level::Critical, format!("a fill at {m:.1} {unit} (limit {max_limit} {unit})")));
        } else if let Some(p) = quantile(xs, 0.95).filter(|p| *p > p95_limit) {
            out.push(Finding::new(
                key,
                Level::Warning,
                format!("p95 {p:.1} {unit} over {} fill(s) in the last hour (limit {p95_limit} {unit})", xs.len()),
            ));
        }
    };
    measure("slippage", &sample.slippage_bps, limits.slippage_p95_bps, limits.slippage_max_bps, "bps");
    measure("fill_latency", &sample.latency_secs, limits.latency_p95_secs, limits.latency_max_secs, "s");
    if sample.fees_pct_of_equity > limits.fees_per_hour_pct {
        out.push(Finding::new(
            "fees",
            Level::Warning,
            format!(
                "fees of the last hour {:.3}% of equity (limit {}%)",
                sample.fees_pct_of_equity, limits.fees_per_hour_pct
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(f: &[Finding]) -> Vec<(String, Level)> {
        f.iter().map(|f| (f.key.clone(), f.level)).collect()
    }

    #[test]
    fn limits_are_applied_at_their_configured_values() {
        let l = ExecutionLimits::default();
        let calm =
            ExecutionSample { slippage_bps: vec![2.0; 40], latency_secs: vec![0.4; 40], fees_pct_of_equity: 0.05 };
        assert!(evaluate(&calm, &l).is_empty());
        // 20 fills: the p95 interpolates between the 19th and 20th order statistics.
        let mut slip = vec![1.0; 18];
        slip.extend([16.0, 16.0]);
        let s = ExecutionSample { slippage_bps: slip.clone(), ..calm.clone() };
        assert_eq!(keys(&evaluate(&s, &l)), [("monitor:slippage".to_owned(), Level::Warning)]);
        slip[19] = 30.5;
        let s = ExecutionSample { slippage_bps: slip, ..calm.clone() };
        assert_eq!(keys(&evaluate(&s, &l)), [("monitor:slippage".to_owned(), Level::Critical)]);
        let just_at = ExecutionSample { slippage_bps: vec![15.0; 10], latency_secs: vec![5.0; 10], ..calm.clone() };
        assert!(evaluate(&just_at, &l).is_empty(), "a limit reached is not exceeded");
        let slow = ExecutionSample { latency_secs: vec![10.5], ..calm.clone() };
        assert_eq!(keys(&evaluate(&slow, &l)), [("monitor:fill_latency".to_owned(), Level::Critical)]);
        let costly = ExecutionSample { fees_pct_of_equity: 0.11, ..calm };
        assert_eq!(keys(&evaluate(&costly, &l)), [("monitor:fees".to_owned(), Level::Warning)]);
    }
}
