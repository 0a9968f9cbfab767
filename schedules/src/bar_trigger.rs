//! Runs the trading cycle the moment its bar has closed for every symbol, instead of waiting for the cron fire
//! at close + `bar_delay_secs`. The cron fire stays as the fallback: the trading cycle's ledger key is the bar
//! close, so whichever of the two comes second finds the run done (or running) and does nothing.
//!
//! [`BarCloseTrigger`] is the pure part (which bar is complete); [`StreamTrigger`] fires it through the
//! [`Runtime`] and measures the latency from the completing bar's arrival to the start of Analysis.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use mcbot_stages::domain::{Symbol, Timeframe};

use crate::jobs::TradingCycleJob;
use crate::runtime::{FireOutcome, Runtime};

/// A bar that has closed for every traded symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyBar {
    /// The bar's close: the trading cycle's ledger key.
    pub close: DateTime<Utc>,
    /// When the last symbol's bar arrived: where the "closed kline to Analysis" latency starts.
    pub completed_at: DateTime<Utc>,
}

/// Collects closed bars per close time until every symbol has one.
#[derive(Debug)]
pub struct BarCloseTrigger {
    symbols: BTreeSet<Symbol>,
    timeframe: Timeframe,
    pending: BTreeMap<DateTime<Utc>, (BTreeSet<Symbol>, DateTime<Utc>)>,
    fired: Option<DateTime<Utc>>,
}

impl BarCloseTrigger {
    /// A trigger for `symbols` on `timeframe`.
    pub fn new(symbols: &[Symbol], timeframe: Timeframe) -> Self {
        Self { symbols: symbols.iter().cloned().collect(), timeframe, pending: BTreeMap::new(), fired: None }
    }

    /// Takes the closed bar of `symbol` opened at `open_time`, which arrived at `received_at`; returns the bar
    /// once all symbols have it. Only the newest bar triggers: a bar older than one bar length at `now` is a
    /// backfill of history (start-up, a reconnect), which catch-up and the cron fallback already own, and a
    /// bar at or before the last one triggered is never triggered again.
    pub fn observe(
        &mut self,
        symbol: &Symbol,
        open_time: DateTime<Utc>,
        received_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<ReadyBar> {
        let tf = self.timeframe.duration();
        let close = open_time + tf;
        if !self.symbols.contains(symbol) || self.fired.is_some_and(|f| close <= f) || now - close >= tf {
            return None;
        }
        // Bars that can no longer complete (a symbol never delivered them) are forgotten.
        self.pending.retain(|c, _| now - *c < tf + tf);
        let (seen, last) = self.pending.entry(close).or_insert_with(|| (BTreeSet::new(), received_at));
        seen.insert(symbol.clone());
        *last = (*last).max(received_at);
        if seen.len() < self.symbols.len() {
            return None;
        }
        let completed_at = *last;
        self.pending.retain(|c, _| *c > close);
        self.fired = Some(close);
        Some(ReadyBar { close, completed_at })
    }
}

/// One cycle the stream started.
#[derive(Debug, Clone)]
pub struct TriggeredCycle {
    /// The bar.
    pub bar: ReadyBar,
    /// What the runtime did (`AlreadyDone` when the cron fallback or another replica was first).
    pub outcome: FireOutcome,
    /// From the completing bar's arrival to the start of Analysis, when Analysis ran.
    pub latency: Option<Duration>,
}

/// Fires the trading cycle through the runtime (same ledger, same run id as the cron fire) for each complete
/// bar.
pub struct StreamTrigger {
    trigger: Mutex<BarCloseTrigger>,
}

impl StreamTrigger {
    /// A trigger for the pipeline's symbols and timeframe.
    pub fn new(symbols: &[Symbol], timeframe: Timeframe) -> Self {
        Self { trigger: Mutex::new(BarCloseTrigger::new(symbols, timeframe)) }
    }

    /// Feeds one closed bar; when it completes the bar for every symbol, runs the cycle and returns what
    /// happened.
    pub async fn on_bar(
        &self,
        runtime: &Runtime,
        symbol: &Symbol,
        open_time: DateTime<Utc>,
        received_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<TriggeredCycle> {
        let ready =
            self.trigger.lock().unwrap_or_else(|p| p.into_inner()).observe(symbol, open_time, received_at, now)?;
        let outcome = runtime.fire_named_after_running(TradingCycleJob::NAME, ready.close).await?;
        let latency = analysis_started_at(&outcome).map(|t| t - ready.completed_at);
        match (&outcome, latency) {
            (FireOutcome::Ran { summary, .. }, Some(l)) => {
                tracing::info!(latency_ms = l.num_milliseconds(), "bar {} closed: {summary}", ready.close)
            }
            (other, _) => tracing::debug!(outcome = %other, "bar {} closed", ready.close),
        }
        Some(TriggeredCycle { bar: ready, outcome, latency })
    }
}

/// The start of Analysis recorded in a trading cycle's outcome.
pub fn analysis_started_at(outcome: &FireOutcome) -> Option<DateTime<Utc>> {
    let FireOutcome::Ran { detail, .. } = outcome else { return None };
    let stage = detail
        .get("stages")?
        .as_array()?
        .iter()
        .find(|s| s.get("stage").and_then(|v| v.as_str()) == Some("analysis"))?;
    stage.get("started_at")?.as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap()
    }

    fn trigger() -> BarCloseTrigger {
        BarCloseTrigger::new(&[sym("BTCUSDT"), sym("ETHUSDT")], "1h".parse().unwrap())
    }

    #[test]
    fn fires_once_when_the_last_symbol_arrives() {
        let mut tr = trigger();
        let open = t("2026-01-01T10:00:00Z");
        let now = t("2026-01-01T11:00:01Z");
        assert_eq!(tr.observe(&sym("BTCUSDT"), open, t("2026-01-01T11:00:00.2Z"), now), None);
        assert_eq!(
            tr.observe(&sym("BTCUSDT"), open, t("2026-01-01T11:00:00.3Z"), now),
            None,
            "a repeat is not a symbol"
        );
        let ready = tr.observe(&sym("ETHUSDT"), open, t("2026-01-01T11:00:00.4Z"), now).unwrap();
        assert_eq!(ready, ReadyBar { close: t("2026-01-01T11:00:00Z"), completed_at: t("2026-01-01T11:00:00.4Z") });
        assert_eq!(tr.observe(&sym("ETHUSDT"), open, now, now), None, "never twice");
        assert_eq!(tr.observe(&sym("BTCUSDT"), open, now, now), None, "never twice");
    }

    #[test]
    fn ignores_backfilled_history_other_symbols_and_older_bars() {
        let mut tr = trigger();
        let now = t("2026-01-01T11:00:01Z");
        for sym_ in ["BTCUSDT", "ETHUSDT"] {
            assert_eq!(tr.observe(&sym(sym_), t("2026-01-01T09:00:00Z"), now, now), None, "a bar closed an hour ago");
        }
        assert_eq!(tr.observe(&sym("SOLUSDT"), t("2026-01-01T10:00:00Z"), now, now), None);
        assert_eq!(tr.observe(&sym("BTCUSDT"), t("2026-01-01T10:00:00Z"), now, now), None);
        assert!(tr.observe(&sym("ETHUSDT"), t("2026-01-01T10:00:00Z"), now, now).is_some());
        let later = t("2026-01-01T12:00:02Z");
        assert_eq!(tr.observe(&sym("BTCUSDT"), t("2026-01-01T11:00:00Z"), later, later), None);
        // ETH's 11:00 bar never came; by 13:00 the 12:00 bar completes on its own.
        let much_later = t("2026-01-01T13:00:01Z");
        assert_eq!(tr.observe(&sym("BTCUSDT"), t("2026-01-01T12:00:00Z"), much_later, much_later), None);
        let ready = tr.observe(&sym("ETHUSDT"), t("2026-01-01T12:00:00Z"), much_later, much_later).unwrap();
        assert_eq!(ready.close, t("2026-01-01T13:00:00Z"));
        assert_eq!(tr.observe(&sym("ETHUSDT"), t("2026-01-01T11:00:00Z"), much_later, much_later), None, "older");
    }

    #[test]
    fn a_bar_arriving_just_before_our_clock_reaches_the_close_still_counts() {
        let mut tr = trigger();
        let now = t("2026-01-01T10:59:59.9Z");
        assert_eq!(tr.observe(&sym("BTCUSDT"), t("2026-01-01T10:00:00Z"), now, now), None);
        assert!(tr.observe(&sym("ETHUSDT"), t("2026-01-01T10:00:00Z"), now, now).is_some());
    }

    #[test]
    fn analysis_start_is_read_from_the_cycle_detail() {
        let detail = serde_json::json!({"stages": [
            {"stage": "risk_check", "started_at": "2026-01-01T11:00:00.1Z"},
            {"stage": "analysis", "started_at": "2026-01-01T11:00:00.5Z"}]});
        let ran = FireOutcome::Ran {
            run_id: "x".into(),
            status: mcbot_stages::ports::JobStatus::Succeeded,
            summary: String::new(),
            detail,
        };
        assert_eq!(analysis_started_at(&ran), Some(t("2026-01-01T11:00:00.5Z")));
        assert_eq!(analysis_started_at(&FireOutcome::AlreadyDone { run_id: "x".into() }), None);
    }
}
