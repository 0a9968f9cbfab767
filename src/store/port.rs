//! The `Store` port implemented by [`SqlStore`]: each method delegates to the module that owns its tables.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcbot_stages::domain::{Candle, ClientOrderId, Fill, Order, Position, Symbol, Timeframe};
use mcbot_stages::ports::{
    BotState, EquitySnapshot, JobClaim, JobRunRecord, JobStatus, ReportRecord, RiskEvent, SignalRecord, Store,
    StoreError,
};

use super::SqlStore;
use super::dialect::Sql;

static PING: Sql = Sql::new("SELECT 1");

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.backend.name()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query(&PING).execute(&self.pool).await.map_err(self.err("ping"))?;
        Ok(())
    }

    async fn claim_run(
        &self,
        run_id: &str,
        job: &str,
        scheduled_at: DateTime<Utc>,
        now: DateTime<Utc>,
        stale_after: chrono::Duration,
    ) -> Result<JobClaim, StoreError> {
        self.claim_run_impl(run_id, job, scheduled_at, now, stale_after).await
    }

    async fn finish_run(
        &self,
        run_id: &str,
        status: JobStatus,
        finished_at: DateTime<Utc>,
        error: Option<&str>,
        outcome: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        self.finish_run_impl(run_id, status, finished_at, error, outcome).await
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

    async fn candles(
        &self,
        symbol: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Candle>, StoreError> {
        self.candles_impl(symbol, tf, until, limit).await
    }

    async fn insert_order(&self, order: &Order) -> Result<bool, StoreError> {
        self.insert_order_impl(order).await
    }

    async fn update_order(&self, order: &Order) -> Result<(), StoreError> {
        self.update_order_impl(order).await
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

    async fn insert_fill(&self, fill: &Fill) -> Result<bool, StoreError> {
        self.insert_fill_impl(fill).await
    }

    async fn fills_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Fill>, StoreError> {
        self.fills_between_impl(from, to).await
    }

    async fn save_position(&self, position: &Position) -> Result<(), StoreError> {
        self.save_position_impl(position).await
    }

    async fn positions(&self) -> Result<Vec<Position>, StoreError> {
        self.positions_impl().await
    }

    async fn insert_signal(&self, signal: &SignalRecord) -> Result<(), StoreError> {
        self.insert_signal_impl(signal).await
    }

    async fn signals_of_run(&self, run_id: &str) -> Result<Vec<SignalRecord>, StoreError> {
        self.signals_of_run_impl(run_id).await
    }

    async fn insert_risk_event(&self, event: &RiskEvent) -> Result<(), StoreError> {
        self.insert_risk_event_impl(event).await
    }

    async fn recent_risk_events(&self, limit: i64) -> Result<Vec<RiskEvent>, StoreError> {
        self.recent_risk_events_impl(limit).await
    }

    async fn insert_equity(&self, snapshot: &EquitySnapshot) -> Result<(), StoreError> {
        self.insert_equity_impl(snapshot).await
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

    async fn insert_heartbeat(
        &self,
        ts: DateTime<Utc>,
        ok: bool,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.insert_heartbeat_impl(ts, ok, detail).await
    }

    async fn load_state(&self) -> Result<BotState, StoreError> {
        self.load_state_impl().await
    }

    async fn save_state(&self, state: &BotState) -> Result<(), StoreError> {
        self.save_state_impl(state).await
    }
}
