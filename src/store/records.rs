//! Decisions, risk events, equity, reports, heartbeats and the bot state: what the bot saw and decided, for
//! drawdown breakers, reports, the status command and a restart.

use chrono::{DateTime, Utc};
use mcbot_stages::ports::{BotState, EquitySnapshot, ReportRecord, RiskEvent, SignalRecord, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::SqlStore;
use super::codec::{Cols, clean, dec, json_text, millis, parse_severity};
use super::dialect::Sql;

/// The `bot_state` key under which [`BotState`] is kept.
const BOT_STATE_KEY: &str = "bot";

static UPSERT_SIGNAL: Sql = Sql::new(
    "INSERT INTO signals (run_id, ts, symbol, strategy, target_weight, reason) \
     VALUES ($1, $2, $3, $4, $5::numeric, $6) ON CONFLICT (run_id, symbol, strategy) \
     DO UPDATE SET ts = excluded.ts, target_weight = excluded.target_weight, reason = excluded.reason",
);
static SIGNALS_OF_RUN: Sql = Sql::new(
    "SELECT run_id, ts, symbol, strategy, target_weight::text, reason FROM signals WHERE run_id = $1 \
     ORDER BY symbol, strategy",
);
static INSERT_RISK_EVENT: Sql =
    Sql::new("INSERT INTO risk_events (ts, run_id, kind, severity, message) VALUES ($1, $2, $3, $4, $5)");
static RECENT_RISK_EVENTS: Sql =
    Sql::new("SELECT ts, run_id, kind, severity, message FROM risk_events ORDER BY ts DESC, id DESC LIMIT $1");
static UPSERT_EQUITY: Sql = Sql::new(
    "INSERT INTO equity_snapshots (ts, equity, cash) VALUES ($1, $2::numeric, $3::numeric) \
     ON CONFLICT (ts) DO UPDATE SET equity = excluded.equity, cash = excluded.cash",
);
static EQUITY_BETWEEN: Sql =
    Sql::new("SELECT ts, equity::text, cash::text FROM equity_snapshots WHERE ts >= $1 AND ts < $2 ORDER BY ts");
static EQUITY_BEFORE: Sql =
    Sql::new("SELECT ts, equity::text, cash::text FROM equity_snapshots WHERE ts < $1 ORDER BY ts DESC LIMIT 1");
static UPSERT_REPORT: Sql = Sql::new(
    "INSERT INTO reports (kind, period_start, period_end, body) VALUES ($1, $2, $3, $4::jsonb) \
     ON CONFLICT (kind, period_start) DO UPDATE SET period_end = excluded.period_end, body = excluded.body",
);
static REPORT: Sql =
    Sql::new("SELECT kind, period_start, period_end, body::text FROM reports WHERE kind = $1 AND period_start = $2");
static INSERT_HEARTBEAT: Sql = Sql::new("INSERT INTO heartbeats (ts, ok, detail) VALUES ($1, $2, $3::jsonb)");
static LATEST_HEARTBEAT: Sql =
    Sql::new("SELECT ts, ok, detail::text FROM heartbeats ORDER BY ts DESC, id DESC LIMIT 1");
static LOAD_STATE: Sql = Sql::new("SELECT value::text FROM bot_state WHERE key = $1");
static SAVE_STATE: Sql = Sql::new(
    "INSERT INTO bot_state (key, value) VALUES ($1, $2::jsonb) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
);

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
    /// See [`mcbot_stages::ports::Store::insert_signal`]. One decision per (run, symbol, strategy): a retried
    /// run replaces its own earlier decision instead of recording it twice.
    pub(crate) async fn insert_signal_impl(&self, s: &SignalRecord) -> Result<(), StoreError> {
        self.query(&UPSERT_SIGNAL)
            .bind(s.run_id.as_str())
            .bind(millis(s.ts))
            .bind(s.symbol.as_str())
            .bind(s.strategy.as_str())
            .bind(dec(s.target_weight))
            .bind(clean(&s.reason))
            .execute(&self.pool)
            .await
            .map_err(self.err("insert_signal"))?;
        Ok(())
    }

    /// See [`mcbot_stages::ports::Store::signals_of_run`]; by symbol, then strategy.
    pub(crate) async fn signals_of_run_impl(&self, run_id: &str) -> Result<Vec<SignalRecord>, StoreError> {
        let rows =
            self.query(&SIGNALS_OF_RUN).bind(run_id).fetch_all(&self.pool).await.map_err(self.err("signals_of_run"))?;
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

    /// See [`mcbot_stages::ports::Store::insert_risk_event`]. Every event is kept, even identical ones.
    pub(crate) async fn insert_risk_event_impl(&self, e: &RiskEvent) -> Result<(), StoreError> {
        self.query(&INSERT_RISK_EVENT)
            .bind(millis(e.ts))
            .bind(e.run_id.as_deref())
            .bind(e.kind.as_str())
            .bind(e.severity.as_str())
            .bind(clean(&e.message))
            .execute(&self.pool)
            .await
            .map_err(self.err("insert_risk_event"))?;
        Ok(())
    }

    /// See [`mcbot_stages::ports::Store::recent_risk_events`]; ties in time newest-inserted first.
    pub(crate) async fn recent_risk_events_impl(&self, limit: i64) -> Result<Vec<RiskEvent>, StoreError> {
        let rows = self
            .query(&RECENT_RISK_EVENTS)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("recent_risk_events"))?;
        rows.iter()
            .map(|row| {
                let c = Cols::new(row, "risk_events");
                Ok(RiskEvent {
                    ts: c.time("ts")?,
                    run_id: c.opt_text("run_id")?,
                    kind: c.text("kind")?,
                    severity: c.named("severity", parse_severity)?,
                    message: c.text("message")?,
                })
            })
            .collect()
    }

    /// See [`mcbot_stages::ports::Store::insert_equity`].
    pub(crate) async fn insert_equity_impl(&self, s: &EquitySnapshot) -> Result<(), StoreError> {
        self.query(&UPSERT_EQUITY)
            .bind(millis(s.ts))
            .bind(dec(s.equity))
            .bind(dec(s.cash))
            .execute(&self.pool)
            .await
            .map_err(self.err("insert_equity"))?;
        Ok(())
    }

    /// See [`mcbot_stages::ports::Store::equity_between`].
    pub(crate) async fn equity_between_impl(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<EquitySnapshot>, StoreError> {
        let rows = self
            .query(&EQUITY_BETWEEN)
            .bind(millis(from))
            .bind(millis(to))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("equity_between"))?;
        rows.iter().map(equity_from_row).collect()
    }

    /// See [`mcbot_stages::ports::Store::equity_before`].
    pub(crate) async fn equity_before_impl(&self, t: DateTime<Utc>) -> Result<Option<EquitySnapshot>, StoreError> {
        let row = self
            .query(&EQUITY_BEFORE)
            .bind(millis(t))
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("equity_before"))?;
        row.as_ref().map(equity_from_row).transpose()
    }

    /// See [`mcbot_stages::ports::Store::insert_report`]. A second report for the same kind and period start
    /// replaces the first: a recomputed report (after late fills, or a fixed bug) is the one to keep.
    pub(crate) async fn insert_report_impl(&self, r: &ReportRecord) -> Result<(), StoreError> {
        self.query(&UPSERT_REPORT)
            .bind(r.kind.as_str())
            .bind(millis(r.period_start))
            .bind(millis(r.period_end))
            .bind(json_text(&r.body))
            .execute(&self.pool)
            .await
            .map_err(self.err("insert_report"))?;
        Ok(())
    }

    /// The stored report of `kind` for the period starting at `period_start`, so the report job can tell whether
    /// a period was already reported and the CLI can show it again.
    pub async fn report(&self, kind: &str, period_start: DateTime<Utc>) -> Result<Option<ReportRecord>, StoreError> {
        let row = self
            .query(&REPORT)
            .bind(kind)
            .bind(millis(period_start))
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("report"))?;
        row.as_ref()
            .map(|row| {
                let c = Cols::new(row, "reports");
                Ok(ReportRecord {
                    kind: c.text("kind")?,
                    period_start: c.time("period_start")?,
                    period_end: c.time("period_end")?,
                    body: c.json("body")?,
                })
            })
            .transpose()
    }

    /// See [`mcbot_stages::ports::Store::insert_heartbeat`].
    pub(crate) async fn insert_heartbeat_impl(
        &self,
        ts: DateTime<Utc>,
        ok: bool,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.query(&INSERT_HEARTBEAT)
            .bind(millis(ts))
            .bind(ok)
            .bind(json_text(detail))
            .execute(&self.pool)
            .await
            .map_err(self.err("insert_heartbeat"))?;
        Ok(())
    }

    /// The newest heartbeat, for the status command and for an external liveness check.
    pub async fn latest_heartbeat(&self) -> Result<Option<Heartbeat>, StoreError> {
        let row =
            self.query(&LATEST_HEARTBEAT).fetch_optional(&self.pool).await.map_err(self.err("latest_heartbeat"))?;
        row.as_ref()
            .map(|row| {
                let c = Cols::new(row, "heartbeats");
                Ok(Heartbeat { ts: c.time("ts")?, ok: c.flag("ok")?, detail: c.json("detail")? })
            })
            .transpose()
    }

    /// See [`mcbot_stages::ports::Store::load_state`]. A state that no longer parses is `Corrupt`, never
    /// silently reset: resetting would forget safe mode and tripped breakers.
    pub(crate) async fn load_state_impl(&self) -> Result<BotState, StoreError> {
        let row = self
            .query(&LOAD_STATE)
            .bind(BOT_STATE_KEY)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("load_state"))?;
        let Some(row) = row else { return Ok(BotState::default()) };
        let c = Cols::new(&row, "bot_state");
        let text = c.text("value")?;
        serde_json::from_str(&text).map_err(|e| c.corrupt("value", format!("invalid bot state: {e}")))
    }

    /// See [`mcbot_stages::ports::Store::save_state`].
    pub(crate) async fn save_state_impl(&self, state: &BotState) -> Result<(), StoreError> {
        let text = serde_json::to_string(state)
            .map_err(|e| StoreError::Corrupt(format!("bot_state.value: cannot serialise: {e}")))?;
        self.query(&SAVE_STATE)
            .bind(BOT_STATE_KEY)
            .bind(text)
            .execute(&self.pool)
            .await
            .map_err(self.err("save_state"))?;
        Ok(())
    }
}

fn equity_from_row(row: &AnyRow) -> Result<EquitySnapshot, StoreError> {
    let c = Cols::new(row, "equity_snapshots");
    Ok(EquitySnapshot { ts: c.time("ts")?, equity: c.decimal("equity")?, cash: c.decimal("cash")? })
}
