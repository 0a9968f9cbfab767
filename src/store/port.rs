//! The `Store` port implemented by [`SqlStore`]: each method delegates to the module that owns its tables.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcbot_stages::domain::{Candle, ClientOrderId, Fill, Order, Position, Symbol, Timeframe};
use mcbot_stages::ports::{
    BotState, Claimant, ConsumerCursors, EquitySnapshot, Event, EventQuery, FillStrategy, JobClaim, JobRunRecord,
    JobStatus, NewEvent, ReportRecord, RunFence, Severity, SignalRecord, Store, StoreError, UnitOfWork, Versioned,
};

use super::SqlStore;
use super::query::{Q, Sql};

static PING: Sql = Sql::new("SELECT 1");

/// The fixed statements, for the catalogue.
pub(crate) static STATEMENTS: &[&Sql] = &[&PING];

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.backend.name()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Q::fixed(&PING).execute(&self.pool).await.map_err(self.err("ping"))?;
        Ok(())
    }

    async fn begin(&self) -> Result<Box<dyn UnitOfWork>, StoreError> {
        Ok(Box::new(self.begin_sql().await?))
    }

    async fn claim_run(
        &self,
        run_id: &str,
        job: &str,
        scheduled_at: DateTime<Utc>,
        now: DateTime<Utc>,
        stale_after: chrono::Duration,
        claimant: &Claimant,
    ) -> Result<JobClaim, StoreError> {
        self.claim_run_impl(run_id, job, scheduled_at, now, stale_after, claimant).await
    }

    async fn take_over_run(
        &self,
        run_id: &str,
        token: Option<&str>,
        now: DateTime<Utc>,
        claimant: &Claimant,
    ) -> Result<Option<JobClaim>, StoreError> {
        self.take_over_run_impl(run_id, token, now, claimant).await
    }

    async fn finish_run(
        &self,
        fence: &RunFence,
        status: JobStatus,
        finished_at: DateTime<Utc>,
        error: Option<&str>,
        outcome: Option<&serde_json::Value>,
        events: Vec<NewEvent>,
    ) -> Result<(), StoreError> {
        self.finish_run_impl(fence, status, finished_at, error, outcome, events).await
    }

    async fn record_skipped_run(
        &self,
        run_id: &str,
        job: &str,
        scheduled_at: DateTime<Utc>,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.record_skipped_run_impl(run_id, job, scheduled_at, now, reason).await
    }

    async fn recent_runs(&self, job: Option<&str>, limit: i64) -> Result<Vec<JobRunRecord>, StoreError> {
        self.recent_runs_impl(job, limit).await
    }

    async fn last_success(&self, job: &str) -> Result<Option<JobRunRecord>, StoreError> {
        self.last_success_impl(job).await
    }

    async fn save_candles(&self, symbol: &Symbol, tf: Timeframe, candles: &[Candle]) -> Result<(), StoreError> {
        self.save_candles_impl(symbol, tf, candles).await
    }

    async fn save_candle_sets(&self, tf: Timeframe, sets: &[(Symbol, Vec<Candle>)]) -> Result<(), StoreError> {
        let sets: Vec<(&Symbol, &[Candle])> = sets.iter().map(|(s, c)| (s, c.as_slice())).collect();
        self.write_candles(tf, &sets).await
    }

    async fn candles(
        &self,
        symbol: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Candle>, StoreError> {
        self.candles_impl(symbol, tf, until, limit).await
    }

    async fn order(&self, id: &ClientOrderId) -> Result<Option<Order>, StoreError> {
        self.order_impl(id).await
    }

    async fn open_orders(&self) -> Result<Vec<Order>, StoreError> {
        self.open_orders_impl().await
    }

    async fn orders_of_run(&self, run_id: &str) -> Result<Vec<Order>, StoreError> {
        self.orders_of_run_impl(run_id).await
    }

    async fn fills_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Fill>, StoreError> {
        self.fills_between_impl(from, to).await
    }

    async fn positions(&self) -> Result<Vec<Position>, StoreError> {
        self.positions_impl().await
    }

    async fn signals_of_run(&self, run_id: &str) -> Result<Vec<SignalRecord>, StoreError> {
        self.signals_of_run_impl(run_id).await
    }

    async fn equity_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<EquitySnapshot>, StoreError> {
        self.equity_between_impl(from, to).await
    }

    async fn equity_before(&self, t: DateTime<Utc>) -> Result<Option<EquitySnapshot>, StoreError> {
        self.equity_before_impl(t).await
    }

    async fn insert_report(&self, report: &ReportRecord) -> Result<(), StoreError> {
        self.insert_report_impl(report).await
    }

    async fn stored_report(&self, kind: &str, period_start: DateTime<Utc>) -> Result<Option<ReportRecord>, StoreError> {
        self.report(kind, period_start).await
    }

    async fn latest_report(&self, kind: &str) -> Result<Option<ReportRecord>, StoreError> {
        self.latest_report_impl(kind).await
    }

    async fn fill_strategies(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<FillStrategy>, StoreError> {
        self.fill_strategies_impl(from, to).await
    }

    async fn insert_heartbeat(
        &self,
        ts: DateTime<Utc>,
        ok: bool,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.insert_heartbeat_impl(ts, ok, detail).await
    }

    async fn load_state_versioned(&self) -> Result<Versioned<BotState>, StoreError> {
        self.load_state_impl().await
    }

    async fn read_events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        self.read_events_impl(query).await
    }

    async fn recent_events(&self, min_severity: Severity, limit: i64) -> Result<Vec<Event>, StoreError> {
        self.recent_events_impl(min_severity, limit).await
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.prune_events_impl(before).await
    }

    async fn claim_consumer(
        &self,
        consumer: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<Option<i64>, StoreError> {
        self.claim_consumer_impl(consumer, holder, now, ttl).await
    }

    async fn advance_consumer(
        &self,
        consumer: &str,
        holder: &str,
        last_id: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.advance_consumer_impl(consumer, holder, last_id, now).await
    }

    async fn consumer_cursors(&self) -> Result<ConsumerCursors, StoreError> {
        self.consumer_cursors_impl().await
    }

    fn subscribe_events(&self) -> Option<tokio::sync::broadcast::Receiver<mcbot_stages::ports::Committed>> {
        Some(self.wake.subscribe())
    }
}
