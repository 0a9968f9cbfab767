//! The report jobs (daily, weekly, monthly): each run produces the period that just ended, and every period missed
//! since the last stored report (the bot was down), stores them and emits one `report_produced` event per period
//! with the ledger row, so each period is reported exactly once. The figures and text live in
//! [`crate::reports`]; the job only decides which periods are due.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcbot_stages::ports::{EventKind, FailureKind, NewEvent, ReportRecord, Severity, Store, StoreError};

use crate::reports::{Report, ReportSettings, build_report, text};
use crate::runtime::{Job, JobContext, JobError, JobOutcome};

pub use crate::reports::{Period, period_bounds};

/// A catch-up never walks back further than this many periods (a store whose reports stopped years ago).
const MAX_CATCH_UP: usize = 1000;

/// One report job per period.
pub struct ReportJob {
    period: Period,
    name: String,
    store: Arc<dyn Store>,
    settings: ReportSettings,
}

impl ReportJob {
    /// Builds the job; its name is `report-daily`, `report-weekly` or `report-monthly`.
    pub fn new(period: Period, store: Arc<dyn Store>, settings: ReportSettings) -> Self {
        Self { period, name: format!("report-{}", period.as_str()), store, settings }
    }

    /// Starts of the missed periods before `start` (oldest first): walking back from `start` over periods with no
    /// stored report, or with one this very run stored before it failed, down to the latest report of another
    /// run. Nothing before a first report: a fresh deployment does not report its whole history.
    async fn missed(&self, start: DateTime<Utc>, run_id: &str) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let kind = self.period.as_str();
        let Some(latest) = self.store.latest_report(kind).await? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        let mut s = period_bounds(self.period, start).0;
        while s >= latest.period_start && out.len() < MAX_CATCH_UP {
            match self.store.stored_report(kind, s).await? {
                Some(r) if r.body.get("run_id").and_then(|v| v.as_str()) != Some(run_id) => break,
                _ => out.push(s),
            }
            s = period_bounds(self.period, s).0;
        }
        out.reverse();
        Ok(out)
    }
}

/// The `report_produced` event of a report: its text as the message, headline figures and the whole report
/// in the payload (the notification consumer draws the charts from it).
pub fn report_event(report: &Report, quote: &str, run_id: Option<&str>) -> Result<NewEvent, serde_json::Error> {
    let figures: serde_json::Map<String, serde_json::Value> =
        text::headline(report, quote).into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
    let mut e = NewEvent::new(report.end, EventKind::ReportProduced, Severity::Info, text::render(report, quote))
        .payload(serde_json::json!({
            "period": report.period.as_str(),
            "start": report.start,
            "end": report.end,
            "quote": quote,
            "figures": figures,
            "report": serde_json::to_value(report)?,
        }))
        .dedup(format!("report:{}:{}", report.period.as_str(), report.start.timestamp()));
    if let Some(r) = run_id {
        e = e.run(r);
    }
    Ok(e)
}

#[async_trait]
impl Job for ReportJob {
    fn name(&self) -> &str {
        &self.name
    }

    fn catches_up_any_age(&self) -> bool {
        true
    }

    async fn run(&self, cx: &JobContext) -> Result<JobOutcome, JobError> {
        let (start, _) = period_bounds(self.period, cx.scheduled_at);
        let run_id = cx.run_id.to_string();
        let mut starts = self.missed(start, &run_id).await?;
        starts.push(start);
        let bad = |e: serde_json::Error| JobError::failed(FailureKind::Store, e.to_string());
        let mut events = Vec::new();
        let mut summary = String::new();
        let mut detail = serde_json::Value::Null;
        for s in &starts {
            let end = self.period.next_start(*s);
            let report = build_report(self.store.as_ref(), &self.settings, self.period, *s, end).await?;
            let body = serde_json::json!({"run_id": run_id, "report": serde_json::to_value(&report).map_err(bad)?});
            self.store
                .insert_report(&ReportRecord {
                    kind: self.period.as_str().into(),
                    period_start: *s,
                    period_end: end,
                    body,
                })
                .await?;
            let mut event = report_event(&report, &self.settings.quote, Some(&run_id)).map_err(bad)?;
            // Produced now: a caught-up period's report is news of this run, not of the day it covers.
            event.ts = cx.scheduled_at.max(report.end);
            detail = event.payload.get("figures").cloned().unwrap_or_default();
            summary = text::title(&report);
            events.push(event);
        }
        if starts.len() > 1 {
            summary.push_str(&format!(" (and {} missed period(s) caught up)", starts.len() - 1));
        }
        let mut outcome = JobOutcome::ok(summary, serde_json::json!({"periods": starts, "figures": detail}));
        outcome.events = events;
        Ok(outcome)
    }
}
