//! The verdict table: each statistic against its threshold, pass / caution / fail. The defaults are the
//! usual bars (IS->OOS degradation < 30 %, WFA OOS Sharpe > 1.0, WFA consistency > 70 %, PBO < 0.3, DSR > 1.0);
//! every one is configurable, as is the caution band.

use serde::{Deserialize, Serialize};

use super::cpcv::Cpcv;
use super::dsr::Dsr;
use super::pbo::Pbo;
use super::split::{IsOos, WalkForward};
use crate::backtest::BacktestError;

/// Thresholds of the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// IS->OOS Sharpe degradation must stay below this (fraction).
    pub max_degradation: f64,
    /// Walk-forward stitched OOS Sharpe (and CPCV mean path Sharpe) must exceed this.
    pub min_oos_sharpe: f64,
    /// Share of walk-forward windows with a positive OOS return must exceed this.
    pub min_consistency: f64,
    /// PBO must stay below this.
    pub max_pbo: f64,
    /// Deflated Sharpe (annualised Sharpe above the expected best-of-N luck) must exceed this.
    pub min_dsr: f64,
    /// A miss by less than this fraction of the threshold is "caution" rather than "fail".
    pub caution_margin: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            max_degradation: 0.30,
            min_oos_sharpe: 1.0,
            min_consistency: 0.70,
            max_pbo: 0.30,
            min_dsr: 1.0,
            caution_margin: 0.20,
        }
    }
}

impl Thresholds {
    /// Rejects thresholds that cannot be met or read (NaN, negative margin).
    pub fn validate(&self) -> Result<(), BacktestError> {
        let all = [self.max_degradation, self.min_oos_sharpe, self.min_consistency, self.max_pbo, self.min_dsr];
        if all.iter().any(|v| !v.is_finite()) || !(self.caution_margin >= 0.0 && self.caution_margin.is_finite()) {
            return Err(BacktestError::Grid("thresholds must be finite and the caution margin >= 0".into()));
        }
        Ok(())
    }
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Meets the threshold.
    Pass,
    /// Misses it by less than the caution margin.
    Caution,
    /// Misses it.
    Fail,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pass => "pass",
            Self::Caution => "caution",
            Self::Fail => "fail",
        })
    }
}

/// One line of the verdict table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictRow {
    /// What was checked.
    pub check: String,
    /// The measured value.
    pub value: f64,
    /// The rule, e.g. "< 0.3".
    pub threshold: String,
    /// The outcome.
    pub status: Status,
}

/// The table and its overall outcome (the worst row).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Overall: fail if any row fails, caution if any is caution, else pass.
    pub overall: Status,
    /// The rows.
    pub rows: Vec<VerdictRow>,
}

fn above(check: &str, value: f64, min: f64, margin: f64) -> VerdictRow {
    let status = if value > min {
        Status::Pass
    } else if value > min - margin * min.abs() {
        Status::Caution
    } else {
        Status::Fail
    };
    VerdictRow { check: check.to_owned(), value, threshold: format!("> {min}"), status }
}

fn below(check: &str, value: f64, max: f64, margin: f64) -> VerdictRow {
    let status = if value < max {
        Status::Pass
    } else if value < max + margin * max.abs() {
        Status::Caution
    } else {
        Status::Fail
    };
    VerdictRow { check: check.to_owned(), value, threshold: format!("< {max}"), status }
}

/// Builds the table from whichever results were computed. A NaN value fails (no evidence is not a pass).
pub fn judge(
    th: &Thresholds,
    is_oos: Option<&IsOos>,
    wfa: Option<&WalkForward>,
    cpcv: Option<&Cpcv>,
    pbo: Option<&Pbo>,
    dsr: &Dsr,
) -> Verdict {
    let m = th.caution_margin;
    let mut rows = Vec::new();
    if let Some(r) = is_oos {
        rows.push(below("IS->OOS Sharpe degradation", r.degradation, th.max_degradation, m));
    }
    if let Some(w) = wfa {
        rows.push(above("WFA OOS Sharpe", w.oos_sharpe, th.min_oos_sharpe, m));
        rows.push(above("WFA consistency", w.consistency, th.min_consistency, m));
    }
    if let Some(c) = cpcv {
        rows.push(above("CPCV mean path Sharpe", c.mean_path_sharpe, th.min_oos_sharpe, m));
        rows.push(below("CPCV PBO", c.pbo, th.max_pbo, m));
    }
    if let Some(p) = pbo {
        rows.push(below("PBO (CSCV)", p.pbo, th.max_pbo, m));
    }
    rows.push(above("Deflated Sharpe", dsr.deflated_sharpe, th.min_dsr, m));
    for r in &mut rows {
        if r.value.is_nan() {
            r.status = Status::Fail;
        }
    }
    let overall = rows.iter().map(|r| r.status).max().unwrap_or(Status::Fail);
    Verdict { overall, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands() {
        assert_eq!(above("x", 1.1, 1.0, 0.2).status, Status::Pass);
        assert_eq!(above("x", 1.0, 1.0, 0.2).status, Status::Caution, "the threshold itself is not met: > 1.0");
        assert_eq!(above("x", 0.81, 1.0, 0.2).status, Status::Caution);
        assert_eq!(above("x", 0.79, 1.0, 0.2).status, Status::Fail);
        assert_eq!(below("x", 0.29, 0.3, 0.2).status, Status::Pass);
        assert_eq!(below("x", 0.35, 0.3, 0.2).status, Status::Caution);
        assert_eq!(below("x", 0.37, 0.3, 0.2).status, Status::Fail);
        assert!(Thresholds { max_pbo: f64::NAN, ..Default::default() }.validate().is_err());
    }

    #[test]
    fn overall_is_the_worst_row_and_nan_fails() {
        let dsr = Dsr {
            chosen: 0,
            trials: 2,
            sharpe: 2.0,
            expected_max_sharpe: 0.5,
            deflated_sharpe: 1.5,
            probability: 0.99,
            skew: 0.0,
            kurtosis: 3.0,
        };
        let th = Thresholds::default();
        assert_eq!(judge(&th, None, None, None, None, &dsr).overall, Status::Pass);
        let p = Pbo { pbo: 0.5, splits: 70, mean_logit: -0.1, prob_oos_loss: 0.5 };
        let v = judge(&th, None, None, None, Some(&p), &dsr);
        assert_eq!((v.overall, v.rows.len()), (Status::Fail, 2));
        let nan = Dsr { deflated_sharpe: f64::NAN, ..dsr };
        assert_eq!(judge(&th, None, None, None, None, &nan).overall, Status::Fail);
        let strict = Thresholds { min_dsr: 2.0, ..Default::default() };
        assert_eq!(judge(&strict, None, None, None, None, &dsr).overall, Status::Fail);
    }
}
