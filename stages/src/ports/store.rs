use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Severity;
use crate::domain::{Candle, ClientOrderId, Fill, Order, Position, Symbol, Timeframe};

/// Storage failures sorted by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or timed out: fail closed (no new orders) and retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A stored row cannot be read back (corrupt or from a newer version): fatal, a human must look.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// Migrations failed or the schema is unexpected.
    #[error("database schema error: {0}")]
    Schema(String),
}

/// Outcome of a job run as recorded in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Claimed and in progress.
    Running,
    /// Finished without error.
    Succeeded,
    /// Finished with an error; may be retried for the same scheduled time.
    Failed,
    /// Intentionally not run (overlap, halted, missed beyond the grace period).
    Skipped,
}

impl JobStatus {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Skipped => "skipped",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [JobStatus::Running, JobStatus::Succeeded, JobStatus::Failed, JobStatus::Skipped]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// One row of the job ledger: unique per (job, scheduled time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRunRecord {
    /// Deterministic run id.
    pub run_id: String,
    /// Job name.
    pub job: String,
    /// The fire time the run belongs to.
    pub scheduled_at: DateTime<Utc>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Status.
    pub status: JobStatus,
    /// How many times this scheduled time was attempted.
    pub attempt: i64,
    /// Error text, if failed.
    pub error: Option<String>,
    /// Outcome summary (JSON), e.g. stage outcomes and orders placed.
    pub outcome: Option<serde_json::Value>,
}

impl JobRunRecord {
    /// Duration in milliseconds, if finished.
    pub fn duration_ms(&self) -> Option<i64> {
        self.finished_at.map(|f| (f - self.started_at).num_milliseconds())
    }
}

/// Result of trying to claim a run.
#[derive(Debug, Clone, PartialEq)]
pub enum JobClaim {
    /// The run is ours; `attempt` counts earlier failed tries of the same scheduled time.
    Claimed {
        /// 1 for the first attempt.
        attempt: i64,
    },
    /// Already succeeded (or skipped): do nothing.
    AlreadyDone,
    /// Another process holds it and its lease has not expired.
    Busy,
}

/// Equity at one instant, for drawdown, circuit breakers and reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EquitySnapshot {
    /// When.
    pub ts: DateTime<Utc>,
    /// Cash plus marked positions, in quote.
    pub equity: Decimal,
    /// Free quote.
    pub cash: Decimal,
}

/// A strategy's decision for one symbol, with its reason, recorded before any order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRecord {
    /// The run.
    pub run_id: String,
    /// When.
    pub ts: DateTime<Utc>,
    /// The pair.
    pub symbol: Symbol,
    /// Strategy name.
    pub strategy: String,
    /// Target weight of equity.
    pub target_weight: Decimal,
    /// Why.
    pub reason: String,
}

/// Something a risk control noticed or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskEvent {
    /// When.
    pub ts: DateTime<Utc>,
    /// The run that saw it, if any.
    pub run_id: Option<String>,
    /// Machine name, e.g. `kill_switch`, `daily_loss`, `stale_data`, `reconcile_drift`.
    pub kind: String,
    /// How serious.
    pub severity: Severity,
    /// Human text.
    pub message: String,
}

/// A period report as computed and delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRecord {
    /// `daily`, `weekly` or `monthly`.
    pub kind: String,
    /// Start of the period.
    pub period_start: DateTime<Utc>,
    /// End of the period.
    pub period_end: DateTime<Utc>,
    /// The figures, as JSON.
    pub body: serde_json::Value,
}

/// Everything that must survive a restart besides orders, fills and positions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BotState {
    /// Entries blocked until a human clears it.
    pub safe_mode: bool,
    /// Why safe mode was entered.
    pub safe_mode_reason: Option<String>,
    /// Highest equity seen, for the drawdown breaker.
    pub peak_equity: Option<Decimal>,
    /// Equity at the start of the current UTC day, and which day.
    pub day_start: Option<(DateTime<Utc>, Decimal)>,
    /// Equity at the start of the current ISO week, and which week start.
    pub week_start: Option<(DateTime<Utc>, Decimal)>,
    /// Free quote cash as last known.
    pub cash: Option<Decimal>,
    /// Close time of the last bar the pipeline fully processed, per timeframe.
    pub last_bar: Option<DateTime<Utc>>,
    /// Circuit breakers that are tripped now, with their reasons.
    pub tripped: BTreeMap<String, String>,
}

/// Persistence of everything the bot knows. PostgreSQL in production, SQLite embedded; both pass one contract
/// test suite.
#[async_trait]
pub trait Store: Send + Sync {
    /// Backend name, for status output.
    fn backend(&self) -> &'static str;

    /// Cheap round trip, for health checks.
    async fn ping(&self) -> Result<(), StoreError>;

    // --- job ledger ---
    /// Claims (job, scheduled_at) for `run_id`. A failed earlier attempt is re-claimed with attempt+1; a running
    /// one is re-claimed only once `stale_after` has passed since it started (its process died).
    async fn claim_run(
        &self,
        run_id: &str,
        job: &str,
        scheduled_at: DateTime<Utc>,
        now: DateTime<Utc>,
        stale_after: chrono::Duration,
    ) -> Result<JobClaim, StoreError>;
    /// Records how a claimed run ended.
    async fn finish_run(
        &self,
        run_id: &str,
        status: JobStatus,
        finished_at: DateTime<Utc>,
        error: Option<&str>,
        outcome: Option<&serde_json::Value>,
    ) -> Result<(), StoreError>;
    /// Records a run that was deliberately not executed (overlap, missed beyond grace).
    async fn record_skipped_run(
        &self,
        run_id: &str,
        job: &str,
        scheduled_at: DateTime<Utc>,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError>;
    /// The newest runs, newest first, optionally of one job.
    async fn recent_runs(&self, job: Option<&str>, limit: i64) -> Result<Vec<JobRunRecord>, StoreError>;
    /// The newest successful run of a job.
    async fn last_success(&self, job: &str) -> Result<Option<JobRunRecord>, StoreError>;

    // --- market data ---
    /// Upserts closed candles.
    async fn save_candles(&self, symbol: &Symbol, tf: Timeframe, candles: &[Candle]) -> Result<(), StoreError>;
    /// The newest `limit` stored candles with open time before `until`, oldest first.
    async fn candles(
        &self,
        symbol: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Candle>, StoreError>;

    // --- orders, fills, positions ---
    /// Inserts an order unless its client order id exists; returns false if it already existed.
    async fn insert_order(&self, order: &Order) -> Result<bool, StoreError>;
    /// Updates status, executed quantity, average price and exchange id.
    async fn update_order(&self, order: &Order) -> Result<(), StoreError>;
    /// One order by client order id.
    async fn order(&self, id: &ClientOrderId) -> Result<Option<Order>, StoreError>;
    /// Orders not in a final state.
    async fn open_orders(&self) -> Result<Vec<Order>, StoreError>;
    /// All orders of a run.
    async fn orders_of_run(&self, run_id: &str) -> Result<Vec<Order>, StoreError>;
    /// Inserts a fill unless its trade id exists; returns false if it already existed.
    async fn insert_fill(&self, fill: &Fill) -> Result<bool, StoreError>;
    /// Fills in [from, to), oldest first.
    async fn fills_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Fill>, StoreError>;
    /// Replaces the stored position of its symbol.
    async fn save_position(&self, position: &Position) -> Result<(), StoreError>;
    /// All stored positions (including flat ones that carry realised P&L).
    async fn positions(&self) -> Result<Vec<Position>, StoreError>;

    // --- decisions, risk, equity, reports, state ---
    /// Records a strategy decision.
    async fn insert_signal(&self, signal: &SignalRecord) -> Result<(), StoreError>;
    /// Signals of a run.
    async fn signals_of_run(&self, run_id: &str) -> Result<Vec<SignalRecord>, StoreError>;
    /// Records a risk event.
    async fn insert_risk_event(&self, event: &RiskEvent) -> Result<(), StoreError>;
    /// The newest risk events, newest first.
    async fn recent_risk_events(&self, limit: i64) -> Result<Vec<RiskEvent>, StoreError>;
    /// Records equity; one per timestamp (a rerun overwrites).
    async fn insert_equity(&self, snapshot: &EquitySnapshot) -> Result<(), StoreError>;
    /// Snapshots in [from, to), oldest first.
    async fn equity_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<EquitySnapshot>, StoreError>;
    /// The newest snapshot before `t`.
    async fn equity_before(&self, t: DateTime<Utc>) -> Result<Option<EquitySnapshot>, StoreError>;
    /// Stores a report (one per kind and period start).
    async fn insert_report(&self, report: &ReportRecord) -> Result<(), StoreError>;
    /// Records a heartbeat with its details.
    async fn insert_heartbeat(&self, ts: DateTime<Utc>, ok: bool, detail: &serde_json::Value)
    -> Result<(), StoreError>;
    /// Loads the bot state; default when never saved.
    async fn load_state(&self) -> Result<BotState, StoreError>;
    /// Persists the bot state.
    async fn save_state(&self, state: &BotState) -> Result<(), StoreError>;
}
