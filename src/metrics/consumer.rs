//! The metrics consumer of the event log: every order, fill, signal, stage outcome, breaker and venue limit the
//! bot records becomes a counter or histogram here, read from the log by cursor like every other consumer, so
//! metrics never sit on the trading path and count exactly what the log says happened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcbot_schedules::EventHandler;
use mcbot_stages::domain::Decimal;
use mcbot_stages::ports::{Event, EventKind};

use super::names;
use super::state::f;

/// Orders remembered between their `order_placed` and their fills: bounded, the oldest forgotten first.
const MAX_OPEN_ORDERS: usize = 10_000;

/// What the consumer remembers of an order until it is done.
#[derive(Debug, Clone)]
struct Placed {
    ref_price: Option<Decimal>,
    at: DateTime<Utc>,
    seq: u64,
}

#[derive(Debug, Default)]
struct Memory {
    orders: HashMap<String, Placed>,
    /// Realized P&L of each symbol's position when it was opened: its change at the close is the trade's result.
    opened_realized: HashMap<String, Decimal>,
    seq: u64,
}

/// Turns events into metrics. State gauges are refreshed from the store after events that change state
/// (`poke`), so the figures match what the bot acts on.
pub struct EventMetrics {
    name: String,
    memory: Mutex<Memory>,
    poke: Option<Arc<tokio::sync::Notify>>,
}

impl EventMetrics {
    /// A consumer named `name` (its cursor key); `poke` is notified after events that change the stored state.
    pub fn new(name: impl Into<String>, poke: Option<Arc<tokio::sync::Notify>>) -> Self {
        Self { name: name.into(), memory: Mutex::new(Memory::default()), poke }
    }

    /// Records the metrics of `events`, oldest first; true when one of them changed the stored state.
    pub fn record(&self, events: &[Event]) -> bool {
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        let mut state_changed = false;
        for e in events {
            state_changed |= record_one(&mut memory, e);
        }
        state_changed
    }
}

#[async_trait]
impl EventHandler for EventMetrics {
    fn name(&self) -> &str {
        &self.name
    }

    async fn handle(&self, events: &[Event]) -> Result<(), String> {
        if self.record(events)
            && let Some(p) = &self.poke
        {
            p.notify_one();
        }
        Ok(())
    }
}

fn text<'a>(e: &'a Event, key: &str) -> Option<&'a str> {
    e.event.payload.get(key).and_then(|v| v.as_str())
}

fn decimal(e: &Event, key: &str) -> Option<Decimal> {
    text(e, key).and_then(|s| s.parse().ok())
}

fn side(e: &Event) -> &'static str {
    match text(e, "side") {
        Some("sell") => "sell",
        _ => "buy",
    }
}

fn order(e: &Event, outcome: &'static str) {
    metrics::counter!(names::ORDERS, "side" => side(e), "outcome" => outcome).increment(1);
}

fn reject(reason: &'static str) {
    metrics::counter!(names::ORDER_REJECTS, "reason" => reason).increment(1);
}

/// Records one event; true when it reports a change of the stored state.
fn record_one(memory: &mut Memory, e: &Event) -> bool {
    let ev = &e.event;
    metrics::counter!(names::EVENTS, "kind" => ev.kind.as_str(), "severity" => ev.severity.as_str()).increment(1);
    let symbol = || ev.symbol.as_ref().map_or_else(String::new, |s| s.as_str().to_owned());
    let id = || text(e, "client_order_id").unwrap_or_default().to_owned();
    match ev.kind {
        EventKind::OrderPlaced => {
            order(e, "placed");
            memory.seq += 1;
            if memory.orders.len() >= MAX_OPEN_ORDERS
                && let Some(oldest) = memory.orders.iter().min_by_key(|(_, p)| p.seq).map(|(k, _)| k.clone())
            {
                memory.orders.remove(&oldest);
            }
            let placed = Placed { ref_price: decimal(e, "ref_price"), at: ev.ts, seq: memory.seq };
            memory.orders.insert(id(), placed);
            false
        }
        EventKind::OrderAcknowledged => {
            order(e, "acknowledged");
            if let Some(p) = memory.orders.get(&id()) {
                let secs = (ev.ts - p.at).num_milliseconds() as f64 / 1000.0;
                metrics::histogram!(names::ORDER_ACK_LATENCY).record(secs.max(0.0));
            }
            true
        }
        EventKind::OrderRejected => {
            order(e, "rejected");
            reject("venue_rejected");
            memory.orders.remove(&id());
            true
        }
        EventKind::OrderNotPlaced => {
            order(e, "not_placed");
            reject("not_placed");
            memory.orders.remove(&id());
            true
        }
        EventKind::OrderOutcomeUnknown => {
            order(e, "outcome_unknown");
            reject("outcome_unknown");
            true
        }
        EventKind::OrderCanceled => {
            order(e, "canceled");
            memory.orders.remove(&id());
            true
        }
        EventKind::OrderFilled => {
            let side = side(e);
            let sym = symbol();
            metrics::counter!(names::FILLS, "symbol" => sym.clone(), "side" => side).increment(1);
            let (qty, price, fee) = (decimal(e, "qty"), decimal(e, "price"), decimal(e, "fee"));
            if let Some(fee) = fee {
                metrics::gauge!(names::FEES, "symbol" => sym.clone()).increment(f(fee));
            }
            if let (Some(q), Some(p)) = (qty, price) {
                metrics::gauge!(names::NOTIONAL, "symbol" => sym, "side" => side).increment(f(q * p));
            }
            let reference = memory.orders.get(&id()).and_then(|o| o.ref_price).filter(|r| *r > Decimal::ZERO);
            if let (Some(r), Some(p)) = (reference, price) {
                let signed = if side == "sell" { r - p } else { p - r };
                let bps = signed / r * Decimal::from(10_000);
                metrics::histogram!(names::SLIPPAGE_BPS, "side" => side).record(f(bps));
            }
            true
        }
        EventKind::PositionOpened => {
            if let Some(r) = decimal(e, "realized_pnl") {
                memory.opened_realized.insert(symbol(), r);
            }
            true
        }
        EventKind::PositionClosed => {
            let result = match (memory.opened_realized.remove(&symbol()), decimal(e, "realized_pnl")) {
                (Some(before), Some(after)) if after > before => "win",
                (Some(before), Some(after)) if after < before => "loss",
                (Some(_), Some(_)) => "even",
                _ => "unknown",
            };
            metrics::counter!(names::POSITIONS_CLOSED, "result" => result).increment(1);
            true
        }
        EventKind::Signal => {
            let strategy = text(e, "strategy").unwrap_or("unknown").to_owned();
            let long = decimal(e, "target_weight").is_some_and(|w| w > Decimal::ZERO);
            let direction = if long { "long" } else { "flat" };
            metrics::counter!(names::SIGNALS, "strategy" => strategy, "direction" => direction).increment(1);
            false
        }
        EventKind::BreakerTripped => {
            let breaker = text(e, "breaker").unwrap_or("unknown").to_owned();
            metrics::counter!(names::BREAKER_TRIPS, "breaker" => breaker).increment(1);
            true
        }
        EventKind::RateLimited => {
            metrics::counter!(names::VENUE_LIMITS, "kind" => "rate_limited").increment(1);
            false
        }
        EventKind::Banned => {
            metrics::counter!(names::VENUE_LIMITS, "kind" => "banned").increment(1);
            true
        }
        EventKind::CycleStarted => {
            let bar: Option<DateTime<Utc>> =
                ev.payload.get("bar_close").and_then(|v| serde_json::from_value(v.clone()).ok());
            if let Some(bar) = bar {
                let secs = (ev.ts - bar).num_milliseconds() as f64 / 1000.0;
                metrics::histogram!(names::BAR_TO_CYCLE).record(secs.max(0.0));
            }
            false
        }
        EventKind::CycleFinished => {
            for s in ev.payload.get("stages").and_then(|v| v.as_array()).into_iter().flatten() {
                let (Some(stage), Some(status)) =
                    (s.get("stage").and_then(|v| v.as_str()), s.get("status").and_then(|v| v.as_str()))
                else {
                    continue;
                };
                let (stage, status) = (known_stage(stage), known_status(status));
                metrics::counter!(names::STAGE_RUNS, "stage" => stage, "status" => status).increment(1);
                if let Some(ms) = s.get("duration_ms").and_then(|v| v.as_u64())
                    && status != "skipped"
                {
                    metrics::histogram!(names::STAGE_DURATION, "stage" => stage).record(ms as f64 / 1000.0);
                }
            }
            true
        }
        EventKind::UnauthorizedChat
        | EventKind::UnauthorizedApi
        | EventKind::LiveStarted
        | EventKind::LiveRefused
        | EventKind::ChannelFailed
        | EventKind::AlertAcknowledged
        | EventKind::NotificationsMuted
        | EventKind::BreakerCleared
        | EventKind::SafeModeOn
        | EventKind::SafeModeOff
        | EventKind::TradingPaused
        | EventKind::TradingResumed
        | EventKind::TradingKilled
        | EventKind::StopLoss
        | EventKind::TakeProfit
        | EventKind::PositionChanged
        | EventKind::ReconcileCorrected
        | EventKind::ReconcileDrift
        | EventKind::ReconcileClosedUnplaced
        | EventKind::StaleData
        | EventKind::DataRecovered
        | EventKind::MonitorAlert
        | EventKind::MonitorCleared => true,
        EventKind::StageHalted
        | EventKind::JobFailed
        | EventKind::Started
        | EventKind::Stopped
        | EventKind::Crashed
        | EventKind::ReportProduced => false,
    }
}

/// A stage name from a payload, as one of the four known labels (anything else is `other`): a label value
/// never comes unchecked from stored text.
fn known_stage(s: &str) -> &'static str {
    match s {
        "risk_check" => "risk_check",
        "data_collection" => "data_collection",
        "analysis" => "analysis",
        "execution" => "execution",
        _ => "other",
    }
}

fn known_status(s: &str) -> &'static str {
    match s {
        "ok" => "ok",
        "restricted" => "restricted",
        "skipped" => "skipped",
        "halted" => "halted",
        "failed" => "failed",
        _ => "other",
    }
}
