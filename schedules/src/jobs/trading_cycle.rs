//! The trading cycle: one pipeline run per closed bar.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcbot_stages::domain::Timeframe;
use mcbot_stages::pipeline::{Pipeline, StageSelection};
use mcbot_stages::ports::{Notifier, RiskEvent, Severity, Store};

use super::ReconcileJob;
use crate::runtime::{Job, JobContext, JobError, JobOutcome};

/// Runs the four stages for the bar that closed just before the fire.
pub struct TradingCycleJob {
    pipeline: Arc<Pipeline>,
    timeframe: Timeframe,
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
    reconcile: Option<Arc<ReconcileJob>>,
    retry: (u32, Duration),
}

impl TradingCycleJob {
    /// The ledger name of this job.
    pub const NAME: &'static str = "trading-cycle";

    /// Builds the job.
    pub fn new(pipeline: Arc<Pipeline>, store: Arc<dyn Store>, notifier: Arc<dyn Notifier>) -> Self {
        let timeframe = pipeline.config().timeframe;
        Self { pipeline, timeframe, store, notifier, reconcile: None, retry: (3, Duration::from_secs(2)) }
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
        let (attempts, mut delay) = self.retry;
        let mut tries = 1;
        let report = loop {
            let result = self.pipeline.run_cycle(&cx.run_id, cx.scheduled_at, StageSelection::All).await;
            let again = match &result {
                Ok(report) => report.retryable(),
                Err(e) => e.retryable(),
            };
            if !again || tries >= attempts {
                break result.map_err(|e| JobError::Failed(format!("cycle not run (fail closed): {e}")))?;
            }
            tracing::warn!(attempt = tries, "transient failure, running the cycle again in {delay:?}");
            tokio::time::sleep(delay).await;
            delay *= 2;
            tries += 1;
        };
        let mut failed = report.failed();
        if let Some(r) = self.reconcile.as_ref().filter(|_| !report.orders.is_empty()) {
            failed |= !r.reconcile_and_guard(cx.run_id.as_str()).await?.is_clean();
        }
        if failed {
            let detail: Vec<String> = report
                .stages
                .iter()
                .filter(|s| !matches!(s.status, mcbot_stages::pipeline::stage::StageStatus::Ok))
                .map(|s| format!("{}: {}", s.stage.as_str(), s.detail))
                .collect();
            let event = RiskEvent {
                ts: report.bar_close,
                run_id: Some(cx.run_id.to_string()),
                kind: "cycle_failed".into(),
                severity: Severity::Critical,
                message: detail.join("; "),
            };
            super::raise(self.store.as_ref(), self.notifier.as_ref(), event).await?;
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
        let detail = serde_json::to_value(&report).map_err(|e| JobError::Failed(e.to_string()))?;
        Ok(JobOutcome { summary, detail, failed })
    }
}
