//! Period reports (daily, weekly, monthly): P&L, return, drawdown and trading activity of the period that just
//! ended, computed from the store alone (so a report can be recomputed any time), logged, stored and sent.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Duration, Months, NaiveTime, TimeZone, Utc};
use mcbot_stages::domain::{Decimal, Side};
use mcbot_stages::ports::{EventKind, FailureKind, NewEvent, ReportRecord, Severity, Store, StoreError};
use serde::Serialize;

use crate::runtime::{Job, JobContext, JobError, JobOutcome};

/// Report period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// UTC calendar day.
    Daily,
    /// ISO week, Monday 00:00 UTC.
    Weekly,
    /// Calendar month, UTC.
    Monthly,
}

impl Period {
    /// Name, as stored and as the job suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }
}

/// The complete period before the one containing `t`: a report fired just after midnight covers yesterday.
pub fn period_bounds(period: Period, t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let day = t.date_naive().and_time(NaiveTime::MIN).and_utc();
    match period {
        Period::Daily => (day - Duration::days(1), day),
        Period::Weekly => {
            let end = day - Duration::days(i64::from(t.weekday().num_days_from_monday()));
            (end - Duration::weeks(1), end)
        }
        Period::Monthly => {
            let end = Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0).single().unwrap_or(day);
            (end.checked_sub_months(Months::new(1)).unwrap_or(end), end)
        }
    }
}

/// The figures of one period, exact.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Equity at the start (last snapshot before it, else the first inside).
    pub start_equity: Option<Decimal>,
    /// Equity at the end (last snapshot inside).
    pub end_equity: Option<Decimal>,
    /// End minus start.
    pub pnl: Decimal,
    /// P&L over start, in %.
    pub return_pct: Decimal,
    /// Largest fall from a running peak inside the period, in %.
    pub max_drawdown_pct: Decimal,
    /// Number of fills.
    pub fills: usize,
    /// Of which buys.
    pub buys: usize,
    /// Of which sells.
    pub sells: usize,
    /// Fees paid, in quote.
    pub fees: Decimal,
    /// Quote value traded.
    pub turnover: Decimal,
}

/// Computes the summary of [start, end) from stored equity snapshots and fills.
pub async fn summarize(store: &dyn Store, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Summary, StoreError> {
    let snaps = store.equity_between(start, end).await?;
    let before = store.equity_before(start).await?;
    let start_equity = before.map(|s| s.equity).or_else(|| snaps.first().map(|s| s.equity));
    let end_equity = snaps.last().map(|s| s.equity).or(start_equity);
    let mut s = Summary { start_equity, end_equity, ..Default::default() };
    if let (Some(a), Some(b)) = (start_equity, end_equity) {
        s.pnl = b - a;
        if a > Decimal::ZERO {
            s.return_pct = (s.pnl / a * Decimal::ONE_HUNDRED).round_dp(4);
        }
    }
    let mut peak = start_equity.unwrap_or_default();
    for snap in &snaps {
        peak = peak.max(snap.equity);
        if peak > Decimal::ZERO {
            s.max_drawdown_pct =
                s.max_drawdown_pct.max(((Decimal::ONE - snap.equity / peak) * Decimal::ONE_HUNDRED).round_dp(4));
        }
    }
    for f in store.fills_between(start, end).await? {
        s.fills += 1;
        match f.side {
            Side::Buy => s.buys += 1,
            Side::Sell => s.sells += 1,
        }
        s.fees += f.fee;
        s.turnover += f.notional();
    }
    Ok(s)
}

/// One report job per period.
pub struct ReportJob {
    period: Period,
    name: String,
    store: Arc<dyn Store>,
}

impl ReportJob {
    /// Builds the job; its name is `report-daily`, `report-weekly` or `report-monthly`.
    pub fn new(period: Period, store: Arc<dyn Store>) -> Self {
        Self { period, name: format!("report-{}", period.as_str()), store }
    }
}

#[async_trait]
impl Job for ReportJob {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, cx: &JobContext) -> Result<JobOutcome, JobError> {
        let (start, end) = period_bounds(self.period, cx.scheduled_at);
        let s = summarize(self.store.as_ref(), start, end).await?;
        let text = format!(
            "{} report {} .. {}: P&L {} ({}%), max drawdown {}%, {} fill(s) ({} buy / {} sell), fees {}, turnover {}",
            self.period.as_str(),
            start.format("%Y-%m-%d"),
            end.format("%Y-%m-%d"),
            s.pnl.round_dp(2),
            s.return_pct.round_dp(2),
            s.max_drawdown_pct.round_dp(2),
            s.fills,
            s.buys,
            s.sells,
            s.fees.round_dp(2),
            s.turnover.round_dp(2),
        );
        let body = serde_json::to_value(&s).map_err(|e| JobError::failed(FailureKind::Store, e.to_string()))?;
        self.store
            .insert_report(&ReportRecord {
                kind: self.period.as_str().into(),
                period_start: start,
                period_end: end,
                body: body.clone(),
            })
            .await?;
        let mut outcome = JobOutcome::ok(text.clone(), body.clone());
        outcome.events.push(
            NewEvent::new(end, EventKind::ReportProduced, Severity::Info, text)
                .run(cx.run_id.to_string())
                .payload(
                    serde_json::json!({"period": self.period.as_str(), "start": start, "end": end, "figures": body}),
                )
                .dedup(format!("report:{}:{}", self.period.as_str(), start.timestamp())),
        );
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn periods_end_where_the_fire_falls() {
        assert_eq!(
            period_bounds(Period::Daily, t("2024-03-01T00:05:00Z")),
            (t("2024-02-29T00:00:00Z"), t("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            period_bounds(Period::Weekly, t("2024-03-04T00:10:00Z")),
            (t("2024-02-26T00:00:00Z"), t("2024-03-04T00:00:00Z"))
        );
        assert_eq!(
            period_bounds(Period::Monthly, t("2024-03-01T00:15:00Z")),
            (t("2024-02-01T00:00:00Z"), t("2024-03-01T00:00:00Z"))
        );
    }
}
