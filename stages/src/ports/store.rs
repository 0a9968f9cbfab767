use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Severity;
use super::events::{Committed, Event, EventQuery, NewEvent};
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
    /// Another writer changed the versioned state first: re-read it and apply the change again.
    #[error("concurrent change: {0}")]
    Conflict(String),
    /// This process's claim on a run was taken over by another: its writes for that run are refused.
    #[error("claim lost: {0}")]
    Fenced(String),
}

impl StoreError {
    /// True when the same call may succeed later (the database was briefly away, or a concurrent writer won).
    pub fn retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Conflict(_))
    }
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
    /// The process that claimed the latest attempt, when recorded (runs of older releases have none).
    pub claimant: Option<Claimant>,
}

impl JobRunRecord {
    /// Duration in milliseconds, if finished.
    pub fn duration_ms(&self) -> Option<i64> {
        self.finished_at.map(|f| (f - self.started_at).num_milliseconds())
    }
}

/// The process that claims a run: recorded with the claim so a claim whose process died on the same host can be
/// taken over at once, and so people are told who holds a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimant {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
}

/// Proof of a claim on a run: every write made for the run carries it, and the store refuses the writes of a
/// claimant whose claim was taken over (a stalled replica that wakes up late changes nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFence {
    /// The run.
    pub run_id: String,
    /// Unique per claim.
    pub token: String,
}

/// Who holds a run that could not be claimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHolder {
    /// The claimant, when the claim recorded one.
    pub claimant: Option<Claimant>,
    /// When the claim was taken.
    pub since: DateTime<Utc>,
    /// The claim's token, for a conditional take-over.
    pub token: Option<String>,
}

/// Result of trying to claim a run.
#[derive(Debug, Clone, PartialEq)]
pub enum JobClaim {
    /// The run is ours; `attempt` counts earlier failed tries of the same scheduled time.
    Claimed {
        /// 1 for the first attempt.
        attempt: i64,
        /// Carried by every write of the run.
        fence: RunFence,
    },
    /// Already succeeded (or skipped): do nothing.
    AlreadyDone,
    /// Another process holds it and its claim is not stale.
    Busy {
        /// Who, when known.
        holder: Option<RunHolder>,
    },
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

/// Where one consumer of the event log has got to: what a monitor compares with the log's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerCursor {
    /// The consumer's name (its cursor's key).
    pub consumer: String,
    /// Id of the last event it handled.
    pub last_id: i64,
    /// When its cursor last moved or was created.
    pub updated_at: DateTime<Utc>,
}

/// Every consumer's cursor and the log's head, read at one instant, so each consumer's lag is exact.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConsumerCursors {
    /// Id of the newest event in the log (0 for an empty log).
    pub head: i64,
    /// One per consumer that ever claimed its cursor, ordered by name.
    pub cursors: Vec<ConsumerCursor>,
}

impl ConsumerCursors {
    /// Events after `cursor`'s position: ids are gap-free, so the difference to the head is the count.
    pub fn lag(&self, cursor: &ConsumerCursor) -> i64 {
        (self.head - cursor.last_id).max(0)
    }
}

/// Which strategy a fill belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillStrategy {
    /// The fill's pair.
    pub symbol: Symbol,
    /// The fill's trade id (unique per pair).
    pub trade_id: String,
    /// The strategy whose signal the order followed.
    pub strategy: String,
}

/// Whether the bot may trade, as set by commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradingMode {
    /// Entries and exits allowed.
    #[default]
    Active,
    /// No new entries; exits (stops, reductions) still run.
    EntriesPaused,
    /// Killed: no entries; open orders were cancelled and, if asked, positions are being closed.
    Halted,
}

impl TradingMode {
    /// Name as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            TradingMode::Active => "active",
            TradingMode::EntriesPaused => "entries_paused",
            TradingMode::Halted => "halted",
        }
    }
}

/// Everything that must survive a restart besides orders, fills and positions. Versioned in the store: it changes
/// only through commands applied to the version they read (see `control`), so no writer overwrites another.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BotState {
    /// Set by pause, resume and kill.
    pub trading: TradingMode,
    /// Positions still to be closed after a kill with flatten: RiskCheck turns them into exits.
    pub flatten: bool,
    /// Conditions raised once and cleared once (e.g. `stale_data:BTCUSDT`), with their reason: a condition
    /// already raised adds no new event.
    pub conditions: BTreeMap<String, String>,
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
    /// Holdings of each base asset that mcbot does not manage (present before its first reconcile and ignored
    /// by policy); `None` until that first reconcile recorded them. Drift is measured on mcbot's own share.
    pub unmanaged: Option<BTreeMap<String, Decimal>>,
    /// What the last start in mode live decided: trading live, or running paper because a guard failed.
    pub live: Option<LiveStatus>,
    /// Entries and trades placed in the current UTC day, for the daily frequency limits.
    pub day_counts: Option<DayCounts>,
    /// When each symbol was last entered (a buy placed), for the minimum interval between entries.
    pub last_entry: BTreeMap<String, DateTime<Utc>>,
}

/// The live guards' verdict at a start in mode live, kept in the state so `status`, the HTTP API and the
/// metrics of any process say why the bot is (or is not) trading real money.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LiveStatus {
    /// True when every guard passed and real orders may be sent (after the dry-run cycles).
    pub active: bool,
    /// When the guards were checked.
    pub checked_at: Option<DateTime<Utc>>,
    /// Each guard that failed, with why.
    pub failed: BTreeMap<String, String>,
    /// Cycles after the start that only simulate their orders.
    pub dry_run_cycles: u32,
    /// Share of equity traded (the canary fraction).
    pub capital_fraction: Decimal,
}

/// Counts of one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DayCounts {
    /// Start of the UTC day counted.
    pub day: Option<DateTime<Utc>>,
    /// Buys placed.
    pub entries: u32,
    /// Orders placed (buys and sells).
    pub trades: u32,
}

/// A stored value with the version it was read at: a write names the version it replaces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// 0 when never saved; each save adds one.
    pub version: i64,
}

/// Changes that belong together, committed together or not at all: an order's acknowledgement with its fills,
/// the positions and the events they produce; a command with its state change and event. Dropped without
/// [`UnitOfWork::commit`], nothing is written. Events appended here get their ids at commit, in order.
#[async_trait]
pub trait UnitOfWork: Send {
    /// Refuses the whole unit (as [`StoreError::Fenced`]) unless `fence` still holds its run's claim; holds the
    /// claim until commit, so it cannot be taken over in between.
    async fn fence(&mut self, fence: &RunFence) -> Result<(), StoreError>;
    /// Inserts an order unless its client order id exists; false if it already existed.
    async fn insert_order(&mut self, order: &Order) -> Result<bool, StoreError>;
    /// Updates status, executed quantity, average price and exchange id.
    async fn update_order(&mut self, order: &Order) -> Result<(), StoreError>;
    /// Inserts a fill unless its trade id exists; false if it already existed.
    async fn insert_fill(&mut self, fill: &Fill) -> Result<bool, StoreError>;
    /// The stored position of a symbol, as this unit sees it.
    async fn position(&mut self, symbol: &Symbol) -> Result<Option<Position>, StoreError>;
    /// Replaces the stored position of its symbol.
    async fn save_position(&mut self, position: &Position) -> Result<(), StoreError>;
    /// Records equity; one per timestamp (a rerun overwrites).
    async fn insert_equity(&mut self, snapshot: &EquitySnapshot) -> Result<(), StoreError>;
    /// Records a strategy decision.
    async fn insert_signal(&mut self, signal: &SignalRecord) -> Result<(), StoreError>;
    /// Replaces the bot state if it is still at `expected_version` ([`StoreError::Conflict`] otherwise);
    /// returns the new version.
    async fn save_state(&mut self, state: &BotState, expected_version: i64) -> Result<i64, StoreError>;
    /// Queues an event, written at commit.
    fn append(&mut self, event: NewEvent);
    /// Writes the queued events and commits everything; returns the new events' ids.
    async fn commit(self: Box<Self>) -> Result<Vec<i64>, StoreError>;
}

/// Persistence of everything the bot knows. PostgreSQL in production, SQLite embedded; both pass one contract
/// test suite. Writes that belong together go through [`Store::begin`]; the single-write methods are units of
/// one.
#[async_trait]
pub trait Store: Send + Sync {
    /// Backend name, for status output.
    fn backend(&self) -> &'static str;

    /// Cheap round trip, for health checks.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Opens a unit of work.
    async fn begin(&self) -> Result<Box<dyn UnitOfWork>, StoreError>;

    // --- job ledger ---
    /// Claims (job, scheduled_at) for `run_id` on behalf of `claimant`. A failed earlier attempt is re-claimed
    /// with attempt+1; a running one only once `stale_after` has passed since it started (see
    /// [`Store::take_over_run`] for a claimant known to be dead).
    async fn claim_run(
        &self,
        run_id: &str,
        job: &str,
        scheduled_at: DateTime<Utc>,
        now: DateTime<Utc>,
        stale_after: chrono::Duration,
        claimant: &Claimant,
    ) -> Result<JobClaim, StoreError>;
    /// Takes over a running claim whose token is still `token` (its claimant is known to be dead). `None` when
    /// the claim changed meanwhile.
    async fn take_over_run(
        &self,
        run_id: &str,
        token: Option<&str>,
        now: DateTime<Utc>,
        claimant: &Claimant,
    ) -> Result<Option<JobClaim>, StoreError>;
    /// Records how a claimed run ended, with the events that report it, in one transaction; refused as
    /// [`StoreError::Fenced`] when the claim was taken over.
    async fn finish_run(
        &self,
        fence: &RunFence,
        status: JobStatus,
        finished_at: DateTime<Utc>,
        error: Option<&str>,
        outcome: Option<&serde_json::Value>,
        events: Vec<NewEvent>,
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
    /// Upserts the new candles of several symbols, all or none: DataCollection's one write per cycle instead of
    /// one per symbol. The default writes symbol by symbol.
    async fn save_candle_sets(&self, tf: Timeframe, sets: &[(Symbol, Vec<Candle>)]) -> Result<(), StoreError> {
        for (symbol, candles) in sets {
            self.save_candles(symbol, tf, candles).await?;
        }
        Ok(())
    }
    /// The newest `limit` stored candles with open time before `until`, oldest first.
    async fn candles(
        &self,
        symbol: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Candle>, StoreError>;

    // --- orders, fills, positions (reads; writes go through a unit of work) ---
    /// Inserts an order unless its client order id exists; false if it already existed.
    async fn insert_order(&self, order: &Order) -> Result<bool, StoreError> {
        let mut uow = self.begin().await?;
        let inserted = uow.insert_order(order).await?;
        uow.commit().await?;
        Ok(inserted)
    }
    /// Updates status, executed quantity, average price and exchange id.
    async fn update_order(&self, order: &Order) -> Result<(), StoreError> {
        let mut uow = self.begin().await?;
        uow.update_order(order).await?;
        uow.commit().await.map(drop)
    }
    /// One order by client order id.
    async fn order(&self, id: &ClientOrderId) -> Result<Option<Order>, StoreError>;
    /// Orders not in a final state.
    async fn open_orders(&self) -> Result<Vec<Order>, StoreError>;
    /// All orders of a run.
    async fn orders_of_run(&self, run_id: &str) -> Result<Vec<Order>, StoreError>;
    /// Inserts a fill unless its trade id exists; false if it already existed.
    async fn insert_fill(&self, fill: &Fill) -> Result<bool, StoreError> {
        let mut uow = self.begin().await?;
        let inserted = uow.insert_fill(fill).await?;
        uow.commit().await?;
        Ok(inserted)
    }
    /// Fills in [from, to), oldest first.
    async fn fills_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Fill>, StoreError>;
    /// Replaces the stored position of its symbol.
    async fn save_position(&self, position: &Position) -> Result<(), StoreError> {
        let mut uow = self.begin().await?;
        uow.save_position(position).await?;
        uow.commit().await.map(drop)
    }
    /// All stored positions (including flat ones that carry realised P&L).
    async fn positions(&self) -> Result<Vec<Position>, StoreError>;

    // --- decisions, equity, reports, state ---
    /// Records a strategy decision.
    async fn insert_signal(&self, signal: &SignalRecord) -> Result<(), StoreError> {
        let mut uow = self.begin().await?;
        uow.insert_signal(signal).await?;
        uow.commit().await.map(drop)
    }
    /// Signals of a run.
    async fn signals_of_run(&self, run_id: &str) -> Result<Vec<SignalRecord>, StoreError>;
    /// Records equity; one per timestamp (a rerun overwrites).
    async fn insert_equity(&self, snapshot: &EquitySnapshot) -> Result<(), StoreError> {
        let mut uow = self.begin().await?;
        uow.insert_equity(snapshot).await?;
        uow.commit().await.map(drop)
    }
    /// Snapshots in [from, to), oldest first.
    async fn equity_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<EquitySnapshot>, StoreError>;
    /// The newest snapshot before `t`.
    async fn equity_before(&self, t: DateTime<Utc>) -> Result<Option<EquitySnapshot>, StoreError>;
    /// Stores a report (one per kind and period start).
    async fn insert_report(&self, report: &ReportRecord) -> Result<(), StoreError>;
    /// The stored report of `kind` for the period starting at `period_start`: a report job tells by it whether a
    /// period was already produced. The default (a store that keeps no reports) has none.
    async fn stored_report(
        &self,
        _kind: &str,
        _period_start: DateTime<Utc>,
    ) -> Result<Option<ReportRecord>, StoreError> {
        Ok(None)
    }
    /// The report of `kind` with the latest period start: where a report job's catch-up resumes after downtime.
    async fn latest_report(&self, _kind: &str) -> Result<Option<ReportRecord>, StoreError> {
        Ok(None)
    }
    /// The strategy behind each fill in [from, to) (through its order's run and the signal of that run for the
    /// symbol), so reports attribute P&L per strategy with one query instead of one per fill. Fills without a
    /// recorded signal are absent. The default knows no strategies.
    async fn fill_strategies(&self, _from: DateTime<Utc>, _to: DateTime<Utc>) -> Result<Vec<FillStrategy>, StoreError> {
        Ok(Vec::new())
    }
    /// Records a heartbeat with its details.
    async fn insert_heartbeat(&self, ts: DateTime<Utc>, ok: bool, detail: &serde_json::Value)
    -> Result<(), StoreError>;
    /// Loads the bot state; default when never saved.
    async fn load_state(&self) -> Result<BotState, StoreError> {
        Ok(self.load_state_versioned().await?.value)
    }
    /// Loads the bot state with its version, for a change applied through a unit of work.
    async fn load_state_versioned(&self) -> Result<Versioned<BotState>, StoreError>;

    // --- the event log ---
    /// Appends events in one transaction; returns their ids.
    async fn append_events(&self, events: Vec<NewEvent>) -> Result<Vec<i64>, StoreError> {
        let mut uow = self.begin().await?;
        for e in events {
            uow.append(e);
        }
        uow.commit().await
    }
    /// Events matching `query`, oldest first.
    async fn read_events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError>;
    /// The newest events of at least `min_severity`, newest first.
    async fn recent_events(&self, min_severity: Severity, limit: i64) -> Result<Vec<Event>, StoreError>;
    /// Deletes events older than `before`; returns how many.
    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Takes (or renews) consumer `consumer`'s lease for `holder` until `now + ttl` and returns its cursor (0 for
    /// a new consumer); `None` while another holder's lease runs, so replicas never consume twice.
    async fn claim_consumer(
        &self,
        consumer: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<Option<i64>, StoreError>;
    /// Moves `consumer`'s cursor to `last_id` if `holder` still holds its lease; false when it lost it.
    async fn advance_consumer(
        &self,
        consumer: &str,
        holder: &str,
        last_id: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Every consumer's cursor with the log's head, in one read: how far behind each consumer is, whichever
    /// process runs it.
    async fn consumer_cursors(&self) -> Result<ConsumerCursors, StoreError>;
    /// Each commit's events, in-process, once committed: a wake-up, so in-process consumers need not poll, and
    /// the events themselves, so a consumer at the log's end need not read them back.
    fn subscribe_events(&self) -> Option<tokio::sync::broadcast::Receiver<Committed>> {
        None
    }
}
