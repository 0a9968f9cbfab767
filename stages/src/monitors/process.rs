//! The process itself: a runtime that cannot wake its tasks on time, memory that keeps growing, descriptors that
//! leak. Measured by the binary (which knows its process), judged here.

use serde::{Deserialize, Serialize};

use super::{Finding, Level};

/// Limits, as configured under `[monitors]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessLimits {
    /// Delay of a task woken on the async runtime, in seconds, above which a warning is raised.
    pub runtime_lag_secs: f64,
    /// Resident memory, in bytes, above which a warning is raised.
    pub rss_bytes: u64,
    /// Open file descriptors above which a warning is raised.
    pub open_fds: u64,
}

impl Default for ProcessLimits {
    fn default() -> Self {
        Self { runtime_lag_secs: 1.0, rss_bytes: 512 * 1024 * 1024, open_fds: 512 }
    }
}

/// What the process measured of itself; a figure the platform cannot give is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProcessSample {
    /// Seconds a freshly spawned task waited to run.
    pub runtime_lag_secs: f64,
    /// Resident memory in bytes.
    pub rss_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
}

/// The findings of `sample` against `limits`.
pub fn evaluate(sample: &ProcessSample, limits: &ProcessLimits) -> Vec<Finding> {
    let mut out = Vec::new();
    if sample.runtime_lag_secs > limits.runtime_lag_secs {
        let m = format!("async runtime lag {:.2} s (limit {} s)", sample.runtime_lag_secs, limits.runtime_lag_secs);
        out.push(Finding::new("runtime_lag", Level::Warning, m));
    }
    if let Some(rss) = sample.rss_bytes.filter(|r| *r > limits.rss_bytes) {
        let mib = |b: u64| b / (1024 * 1024);
        let m = format!("resident memory {} MiB (limit {} MiB)", mib(rss), mib(limits.rss_bytes));
        out.push(Finding::new("memory", Level::Warning, m));
    }
    if let Some(fds) = sample.open_fds.filter(|f| *f > limits.open_fds) {
        out.push(Finding::new(
            "descriptors",
            Level::Warning,
            format!("{fds} open descriptors (limit {})", limits.open_fds),
        ));
    }
    out
}
