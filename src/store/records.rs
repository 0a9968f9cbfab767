//! Decisions, risk events, equity, reports, heartbeats and the bot state: what the bot saw and decided, for
//! drawdown breakers, reports, the status command and a restart.

use super::query::Row;
use chrono::{DateTime, Utc};
use mcbot_stages::ports::{BotState, EquitySnapshot, FillStrategy, ReportRecord, SignalRecord, StoreError, Versioned};
use serde::{Deserialize, Serialize};

use super::SqlStore;
use super::codec::Cols;
use super::query::{Q, Sql};

/// The `bot_state` key under which [`BotState`] is kept.
pub(crate) const BOT_STATE_KEY: &str = "bot";

static SIGNALS_OF_RUN: Sql = Sql::new(
    "SELECT run_id, ts, symbol, strategy, target_weight, reason FROM signals WHERE run_id = $1 \
     ORDER BY symbol, strategy",
);
static EQUITY_BETWEEN: Sql =
    Sql::new("SELECT ts, equity, cash FROM equity_snapshots WHERE ts >= $1 AND ts < $2 ORDER BY ts");
static EQUITY_BEFORE: Sql =
    Sql::new("SELECT ts, equity, cash FROM equity_snapshots WHERE ts < $1 ORDER BY ts DESC LIMIT 1");
static UPSERT_REPORT: Sql = Sql::new(
    "INSERT INTO reports (kind, period_start, period_end, body) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (kind, period_start) DO UPDATE SET period_end = excluded.period_end, body = excluded.body",
);
static REPORT: Sql =
    Sql::new("SELECT kind, period_start, period_end, body FROM reports WHERE kind = $1 AND period_start = $2");
static LATEST_REPORT: Sql = Sql::new(
    "SELECT kind, period_start, period_end, body FROM reports WHERE kind = $1 ORDER BY period_start DESC LIMIT 1",
);
static FILL_STRATEGIES: Sql = Sql::new(
    "SELECT f.symbol, f.trade_id, MIN(s.strategy) AS strategy FROM fills f \
     JOIN orders o ON o.client_order_id = f.client_order_id \
     JOIN signals s ON s.run_id = o.run_id AND s.symbol = o.symbol \
     WHERE f.ts >= $1 AND f.ts < $2 GROUP BY f.symbol, f.trade_id ORDER BY f.symbol, f.trade_id",
);
static INSERT_HEARTBEAT: Sql = Sql::new("INSERT INTO heartbeats (ts, ok, detail) VALUES ($1, $2, $3)");
static LATEST_HEARTBEAT: Sql = Sql::new("SELECT ts, ok, detail FROM heartbeats ORDER BY ts DESC, id DESC LIMIT 1");
pub(crate) static LOAD_STATE: Sql = Sql::new("SELECT value, version FROM bot_state WHERE key = $1");

/// The fixed statements, for the catalogue.
pub(crate) static STATEMENTS: &[&Sql] = &[
    &SIGNALS_OF_RUN,
    &EQUITY_BETWEEN,
    &EQUITY_BEFORE,
    &UPSERT_REPORT,
    &REPORT,
    &LATEST_REPORT,
    &FILL_STRATEGIES,
    &INSERT_HEARTBEAT,
    &LATEST_HEARTBEAT,
    &LOAD_STATE,
];

/// One recorded health check, as the status command shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// When the check ran.
    pub ts: DateTime<Utc>,
    /// Whether everything was healthy.
    pub ok: bool,
    /// What was checked and found.
    pub detail: serde_json::Value,
}

impl SqlStore {
    /// See [`mcbot_stages::ports::Store::signals_of_run`]; by symbol, then strategy.
    pub(crate) async fn signals_of_run_impl(&self, run_id: &str) -> Result<Vec<SignalRecord>, StoreError> {
        let rows =
            Q::fixed(&SIGNALS_OF_RUN).bind(run_id).fetch_all(&self.pool).await.map_err(self.err("signals_of_run"))?;
        rows.iter()
            .map(|row| {
                let c = Cols::new(row, "signals");
                Ok(SignalRecord {
                    run_id: c.text("run_id")?,
                    ts: c.time("ts")?,
                    symbol: c.symbol("symbol")?,
                    strategy: c.text("strategy")?,
                    target_weight: c.decimal("target_weight")?,
                    reason: c.text("reason")?,
                })
            })
            .collect()
    }

    /// See [`mcbot_stages::ports::Store::equity_between`].
    pub(crate) async fn equity_between_impl(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<EquitySnapshot>, StoreError> {
        let rows = Q::fixed(&EQUITY_BETWEEN)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("equity_between"))?;
        rows.iter().map(equity_from_row).collect()
    }

    /// See [`mcbot_stages::ports::Store::equity_before`].
    pub(crate) async fn equity_before_impl(&self, t: DateTime<Utc>) -> Result<Option<EquitySnapshot>, StoreError> {
        let row =
            Q::fixed(&EQUITY_BEFORE).bind(t).fetch_optional(&self.pool).await.map_err(self.err("equity_before"))?;
        row.as_ref().map(equity_from_row).transpose()
    }

    /// See [`mcbot_stages::ports::Store::insert_report`]. A second report for the same kind and period start
    /// replaces the first: a recomputed report (after late fills, or a fixed bug) is the one to keep.
    pub(crate) async fn insert_report_impl(&self, r: &ReportRecord) -> Result<(), StoreError> {
        Q::fixed(&UPSERT_REPORT)
            .bind(r.kind.as_str())
            .bind(r.period_start)
            .bind(r.period_end)
            .bind(r.body.clone())
            .execute(&self.pool)
            .await
            .map_err(self.err("insert_report"))?;
        Ok(())
    }

    /// The stored report of `kind` for the period starting at `period_start`, so the report job can tell whether
    /// a period was already reported and the CLI can show it again.
    pub async fn report(&self, kind: &str, period_start: DateTime<Utc>) -> Result<Option<ReportRecord>, StoreError> {
        let row = Q::fixed(&REPORT)
            .bind(kind)
            .bind(period_start)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("report"))?;
        row.as_ref().map(report_from_row).transpose()
    }

    /// See [`mcbot_stages::ports::Store::latest_report`].
    pub(crate) async fn latest_report_impl(&self, kind: &str) -> Result<Option<ReportRecord>, StoreError> {
        let row =
            Q::fixed(&LATEST_REPORT).bind(kind).fetch_optional(&self.pool).await.map_err(self.err("latest_report"))?;
        row.as_ref().map(report_from_row).transpose()
    }

    /// See [`mcbot_stages::ports::Store::fill_strategies`].
    pub(crate) async fn fill_strategies_impl(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<FillStrategy>, StoreError> {
        let rows = Q::fixed(&FILL_STRATEGIES)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("fill_strategies"))?;
        rows.iter()
            .map(|row| {
                let c = Cols::new(row, "fills");
                Ok(FillStrategy {
                    symbol: c.symbol("symbol")?,
                    trade_id: c.text("trade_id")?,
                    strategy: c.text("strategy")?,
                })
            })
            .collect()
    }

    /// See [`mcbot_stages::ports::Store::insert_heartbeat`].
    pub(crate) async fn insert_heartbeat_impl(
        &self,
        ts: DateTime<Utc>,
        ok: bool,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        Q::fixed(&INSERT_HEARTBEAT)
            .bind(ts)
            .bind(ok)
            .bind(detail.clone())
            .execute(&self.pool)
            .await
            .map_err(self.err("insert_heartbeat"))?;
        Ok(())
    }

    /// The newest heartbeat, for the status command and for an external liveness check.
    pub async fn latest_heartbeat(&self) -> Result<Option<Heartbeat>, StoreError> {
        let row = Q::fixed(&LATEST_HEARTBEAT).fetch_optional(&self.pool).await.map_err(self.err("latest_heartbeat"))?;
        row.as_ref()
            .map(|row| {
                let c = Cols::new(row, "heartbeats");
                Ok(Heartbeat { ts: c.time("ts")?, ok: c.flag("ok")?, detail: c.json("detail")? })
            })
            .transpose()
    }

    /// See [`mcbot_stages::ports::Store::load_state`]. A state that no longer parses is `Corrupt`, never
    /// silently reset: resetting would forget safe mode and tripped breakers.
    pub(crate) async fn load_state_impl(&self) -> Result<Versioned<BotState>, StoreError> {
        let row = Q::fixed(&LOAD_STATE)
            .bind(BOT_STATE_KEY)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("load_state"))?;
        let Some(row) = row else { return Ok(Versioned::default()) };
        let c = Cols::new(&row, "bot_state");
        let value = serde_json::from_value(c.json("value")?)
            .map_err(|e| c.corrupt("value", format!("invalid bot state: {e}")))?;
        Ok(Versioned { value, version: c.int("version")? })
    }
}

fn report_from_row(row: &Row) -> Result<ReportRecord, StoreError> {
    let c = Cols::new(row, "reports");
    Ok(ReportRecord {
        kind: c.text("kind")?,
        period_start: c.time("period_start")?,
        period_end: c.time("period_end")?,
        body: c.json("body")?,
    })
}

fn equity_from_row(row: &Row) -> Result<EquitySnapshot, StoreError> {
    let c = Cols::new(row, "equity_snapshots");
    Ok(EquitySnapshot { ts: c.time("ts")?, equity: c.decimal("equity")?, cash: c.decimal("cash")? })
}
