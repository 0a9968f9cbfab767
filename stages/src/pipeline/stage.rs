//! The `Stage` seam: one step of the pipeline with typed input and output, run under a timeout, its outcome
//! recorded, and its error saying what happens next.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::domain::RunId;
use crate::ports::{FailureKind, StoreError};

/// The four stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageName {
    /// Circuit breakers, stops, kill switch, safe mode.
    RiskCheck,
    /// Closed candles and freshness.
    DataCollection,
    /// Strategy and validation of its decision.
    Analysis,
    /// Sizing, pre-trade checks, orders, fills, state.
    Execution,
}

impl StageName {
    /// Name as printed and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            StageName::RiskCheck => "risk_check",
            StageName::DataCollection => "data_collection",
            StageName::Analysis => "analysis",
            StageName::Execution => "execution",
        }
    }
}

/// What a failing stage asks the pipeline to do next, and what failed (so failures group by cause).
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Transient: the whole cycle may be retried after the delay (same run id, so nothing is placed twice).
    #[error("retry after {after:?}: {reason}")]
    Retry {
        /// What failed.
        kind: FailureKind,
        /// Suggested wait.
        after: Duration,
        /// Why.
        reason: String,
    },
    /// Nothing to do this cycle (e.g. no data yet); not an error for alerting.
    #[error("skipped: {0}")]
    Skip(String),
    /// Stop the cycle, place no entries, alert a human.
    #[error("halted: {reason}")]
    Halt {
        /// What failed.
        kind: FailureKind,
        /// Why.
        reason: String,
    },
}

impl StageError {
    /// A halt for `kind`.
    pub fn halt(kind: FailureKind, reason: impl Into<String>) -> Self {
        StageError::Halt { kind, reason: reason.into() }
    }

    /// What failed; `None` for a skip, which is no failure.
    pub fn kind(&self) -> Option<FailureKind> {
        match self {
            StageError::Retry { kind, .. } | StageError::Halt { kind, .. } => Some(*kind),
            StageError::Skip(_) => None,
        }
    }
}

impl From<StoreError> for StageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) | StoreError::Conflict(m) => {
                StageError::Retry { kind: FailureKind::Store, after: Duration::from_secs(5), reason: m }
            }
            StoreError::Fenced(m) => StageError::halt(FailureKind::ClaimLost, m),
            other => StageError::halt(FailureKind::Store, other.to_string()),
        }
    }
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Completed.
    Ok,
    /// Completed but blocked entries (a breaker, stale data): exits only.
    Restricted,
    /// Not run this cycle.
    Skipped,
    /// Stopped the cycle.
    Halted,
    /// Failed transiently.
    Failed,
}

/// The recorded outcome of one stage in one cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// Which stage.
    pub stage: StageName,
    /// How it ended.
    pub status: StageStatus,
    /// When it started (injected clock): with the arrival time of a closed bar it gives the "bar closed to
    /// Analysis" latency.
    pub started_at: DateTime<Utc>,
    /// Wall time taken.
    pub duration_ms: u64,
    /// One line for people.
    pub detail: String,
    /// What failed, when the stage halted or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureKind>,
}

/// When a stage started and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Clock reading at the start.
    pub started_at: DateTime<Utc>,
    /// Wall time taken.
    pub ms: u64,
}

impl StageReport {
    /// A report from the stage's timing.
    pub fn new(stage: StageName, status: StageStatus, timing: Timing, detail: impl Into<String>) -> Self {
        Self {
            stage,
            status,
            started_at: timing.started_at,
            duration_ms: timing.ms,
            detail: detail.into(),
            failure: None,
        }
    }
}

/// What every stage knows about the cycle it runs in.
#[derive(Debug, Clone)]
pub struct CycleContext {
    /// Deterministic id of the cycle (job and bar close).
    pub run_id: RunId,
    /// Close time of the bar this cycle acts on.
    pub bar_close: DateTime<Utc>,
    /// Clock reading at the start of the cycle.
    pub now: DateTime<Utc>,
    /// The run's claim: every write of the cycle carries it, so a claim taken over refuses this cycle's writes.
    pub fence: Option<crate::ports::RunFence>,
}

/// One step of the pipeline.
#[async_trait]
pub trait Stage: Send + Sync {
    /// What it consumes.
    type Input: Send;
    /// What it produces for the next stage.
    type Output: Send;
    /// Which stage it is.
    fn name(&self) -> StageName;
    /// Runs the step.
    async fn run(&self, cx: &CycleContext, input: Self::Input) -> Result<Self::Output, StageError>;
}

/// Runs `stage` under `timeout`, timing it on `clock` (start) and the wall clock (duration). A time-out is a
/// retryable failure: the stage's own writes are idempotent, so running the cycle again is safe.
pub async fn run_timed<S: Stage>(
    stage: &S,
    cx: &CycleContext,
    input: S::Input,
    timeout: Duration,
    clock: &dyn Clock,
) -> (Result<S::Output, StageError>, Timing) {
    let started_at = clock.now();
    let started = Instant::now();
    let result = match tokio::time::timeout(timeout, stage.run(cx, input)).await {
        Ok(r) => r,
        Err(_) => Err(StageError::Retry {
            kind: FailureKind::Timeout,
            after: Duration::from_secs(1),
            reason: format!("{} timed out after {timeout:?}", stage.name().as_str()),
        }),
    };
    (result, Timing { started_at, ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX) })
}
