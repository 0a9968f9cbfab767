//! The trading cycle: one pipeline run per closed bar, reported by `cycle_started` and `cycle_finished` events
//! (the latter committed with the ledger row).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcbot_stages::domain::Timeframe;
use mcbot_stages::pipeline::stage::StageStatus;
use mcbot_stages::pipeline::{Pipeline, StageSelection};
use mcbot_stages::ports::{EventKind, FailureKind, NewEvent, Severity, Store};
use serde_json::json;

use super::ReconcileJob;
use crate::runtime::{Job, JobContext, JobError, JobOutcome};

/// Runs the four stages for the bar that closed just before the fire.
pub struct TradingCycleJob {
    pipeline: Arc<Pipeline>,
    timeframe: Timeframe,
    store: Arc<dyn Store>,
    reconcile: Option<Arc<ReconcileJob>>,
    retry: (u32, Duration),
}

impl TradingCycleJob {
    /// The ledger name of this job.
    pub const NAME: &'static str = "trading-cycle";

    /// Builds the job.
    pub fn new(pipeline: Arc<Pipeline>, store: Arc<dyn Store>) -> Self {
        let timeframe = pipeline.config().timeframe;
        Self { pipeline, timeframe, store, reconcile: None, retry: (3, Duration::from_secs(2)) }
    }

    /// How often a cycle whose stage failed transiently is run again within the same bar, and the first delay
    /// (doubled each time). The same run id makes a rerun safe.
    pub fn with_retries(mut self, attempts: u32, first_delay: Duration) -> Self {
        self.retry = (attempts.max(1), first_delay);
        self
    }

    /// Reconciles with the exchange after every cycle that placed orders, so drift is caught within the bar.
    pub fn with_reconcile(mut self, reconcile: Arc<ReconcileJob>) -> Self {
        self.reconcile = Some(reconcile);
        self
    }
}

#[async_trait]
impl Job for TradingCycleJob {
    fn name(&self) -> &str {
        Self::NAME
    }

    /// Keyed on the bar close, so the run id (and every client order id) is the same however late the fire.
    fn key(&self, fire_time: DateTime<Utc>) -> DateTime<Utc> {
        self.timeframe.last_close(fire_time)
    }

    async fn run(&self, cx: &JobContext) -> Result<JobOutcome, JobError> {
        let run_id = cx.run_id.to_string();
        let bar = cx.scheduled_at;
        self.store
            .append_events(vec![
                NewEvent::new(
                    self.pipeline.clock().now(),
                    EventKind::CycleStarted,
                    Severity::Info,
                    format!("cycle for bar {bar} started"),
                )
                .run(run_id.clone())
                .payload(json!({"bar_close": bar, "attempt": cx.attempt})),
            ])
            .await?;
        let (attempts, mut delay) = self.retry;
        let mut tries = 1;
        let mut stop = cx.stop.clone();
        let report = loop {
            let result = self.pipeline.run_cycle(&cx.run_id, bar, StageSelection::All, cx.fence.clone()).await;
            let again = match &result {
                Ok(report) => report.retryable(),
                Err(e) => e.retryable(),
            };
            if !again || tries >= attempts || cx.stopping() {
                break result.map_err(|e| JobError::failed(e.kind(), format!("cycle not run (fail closed): {e}")))?;
            }
            tracing::warn!(attempt = tries, "transient failure, running the cycle again in {delay:?}");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = crate::runtime::stop_requested(&mut stop) => {
                    tracing::warn!("stopping: no further attempt of this cycle; the next start retries the bar");
                    break result.map_err(|e| JobError::failed(FailureKind::Shutdown, format!("cycle not run: {e}")))?;
                }
            }
            delay *= 2;
            tries += 1;
        };
        let mut failure = report.failure();
        if let Some(r) = self.reconcile.as_ref().filter(|_| !report.orders.is_empty()) {
            let rec = r.reconcile_and_guard(cx.fence.as_ref()).await?;
            if !rec.is_clean() && failure.is_none() {
                failure = Some((FailureKind::Drift, "reconciliation after the cycle is not clean".into()));
            }
        }
        let summary = if report.already_processed {
            format!("bar {} already processed", report.bar_close)
        } else {
            format!(
                "bar {}: {} order(s), equity {}",
                report.bar_close,
                report.orders.len(),
                report.equity.map_or_else(|| "-".into(), |e| e.round_dp(2).to_string())
            )
        };
        let detail = serde_json::to_value(&report).map_err(|e| JobError::failed(FailureKind::Store, e.to_string()))?;
        let mut outcome = JobOutcome::ok(summary.clone(), detail);
        let now = self.pipeline.clock().now();
        for s in report.stages.iter().filter(|s| s.status == StageStatus::Halted) {
            outcome.events.push(
                NewEvent::new(
                    now,
                    EventKind::StageHalted,
                    Severity::Critical,
                    format!("{} halted: {}", s.stage.as_str(), s.detail),
                )
                .run(run_id.clone())
                .payload(json!({"stage": s.stage, "kind": s.failure}))
                .dedup(format!(
                    "stage_halted:{}:{}",
                    s.stage.as_str(),
                    s.failure.map_or("", |k| k.as_str())
                )),
            );
        }
        let stages: Vec<_> = report
            .stages
            .iter()
            .map(|s| json!({"stage": s.stage, "status": s.status, "duration_ms": s.duration_ms}))
            .collect();
        outcome.events.push(NewEvent::new(now, EventKind::CycleFinished, Severity::Info, summary).run(run_id).payload(
            json!({
                "bar_close": bar,
                "orders": report.orders.len(),
                "equity": report.equity.map(|e| e.to_string()),
                "stages": stages,
                "already_processed": report.already_processed,
            }),
        ));
        outcome.failed = failure.is_some();
        outcome.failure = failure;
        Ok(outcome)
    }
}
