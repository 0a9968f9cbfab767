//! Commands: the only way the trading state changes. Each is applied to the version of the state it read, inside
//! one unit of work with the event that reports it; a concurrent writer makes it re-read and re-apply, never
//! overwrite. The CLI, the HTTP admin API, chat commands and the bot's own jobs (as [`Issuer::System`]) all go
//! through [`issue`] or [`mutate_state`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::Position;
use crate::ports::{BotState, EquitySnapshot, EventKind, NewEvent, RunFence, Severity, Store, StoreError, TradingMode};

/// How often a state change is re-applied after losing a race before giving up: writers are few (a cycle, a
/// reconcile, an operator), so a handful of tries always suffices in practice.
const MAX_ATTEMPTS: u32 = 64;

/// Who issued a command: recorded in its event, so the log says who paused the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Issuer {
    /// `mcbot pause` and friends.
    Cli,
    /// The admin HTTP API.
    Http,
    /// A chat command.
    Telegram,
    /// The bot itself (breakers, reconciliation).
    System,
}

impl Issuer {
    /// Name as recorded.
    pub fn as_str(self) -> &'static str {
        match self {
            Issuer::Cli => "cli",
            Issuer::Http => "http",
            Issuer::Telegram => "telegram",
            Issuer::System => "system",
        }
    }
}

/// A change an operator (or the bot) asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Stop new entries; exits still run.
    Pause,
    /// Trade again after a pause or a kill (safe mode and breakers stay until reset).
    Resume,
    /// Halt: no entries; cancel open orders and, with `flatten`, close every position at the next cycle.
    Kill {
        /// Cancel the bot's open orders at the venue.
        cancel_orders: bool,
        /// Close all positions.
        flatten: bool,
    },
    /// Clear safe mode after a person has looked.
    ResetSafeMode,
    /// Clear one tripped circuit breaker.
    ResetBreaker {
        /// The breaker's name as `mcbot status` shows it.
        name: String,
    },
}

/// Why a command could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The command makes no sense in the current state (e.g. resetting a breaker that is not tripped).
    #[error("{0}")]
    NotApplicable(String),
    /// The store failed; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a command did.
#[derive(Debug, Clone, Serialize)]
pub struct CommandOutcome {
    /// The state after the command.
    pub state: BotState,
    /// The events it recorded.
    pub event_ids: Vec<i64>,
}

/// Applies `command` to `state`, returning the events that report the change. Pure, so every rule is tested
/// directly; [`issue`] persists it.
pub fn apply(
    state: &mut BotState,
    command: &Command,
    issuer: Issuer,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<NewEvent>, CommandError> {
    let by = json!({"issuer": issuer.as_str(), "reason": reason});
    let event = |kind, severity, message: String| {
        let mut payload = by.clone();
        payload["command"] = json!(command);
        NewEvent::new(now, kind, severity, message).payload(payload)
    };
    let who = format!("by {} ({reason})", issuer.as_str());
    Ok(match command {
        Command::Pause => {
            if state.trading != TradingMode::Active {
                return Err(CommandError::NotApplicable(format!("trading is {}, not active", state.trading.as_str())));
            }
            state.trading = TradingMode::EntriesPaused;
            vec![event(EventKind::TradingPaused, Severity::Warning, format!("entries paused {who}"))]
        }
        Command::Resume => {
            if state.trading == TradingMode::Active {
                return Err(CommandError::NotApplicable("trading is already active".into()));
            }
            state.trading = TradingMode::Active;
            state.flatten = false;
            vec![event(EventKind::TradingResumed, Severity::Warning, format!("trading resumed {who}"))]
        }
        Command::Kill { flatten, .. } => {
            state.trading = TradingMode::Halted;
            state.flatten |= *flatten;
            let what = if *flatten { "halted, closing all positions" } else { "halted" };
            vec![event(EventKind::TradingKilled, Severity::Emergency, format!("trading {what} {who}"))]
        }
        Command::ResetSafeMode => {
            if !state.safe_mode {
                return Err(CommandError::NotApplicable("safe mode is not on".into()));
            }
            let was = state.safe_mode_reason.take().unwrap_or_default();
            state.safe_mode = false;
            vec![event(EventKind::SafeModeOff, Severity::Warning, format!("safe mode cleared {who}; it was: {was}"))]
        }
        Command::ResetBreaker { name } => {
            let Some(was) = state.tripped.remove(name) else {
                let tripped: Vec<&str> = state.tripped.keys().map(String::as_str).collect();
                return Err(CommandError::NotApplicable(format!(
                    "breaker {name:?} is not tripped (tripped: {})",
                    if tripped.is_empty() { "none".to_owned() } else { tripped.join(", ") }
                )));
            };
            vec![
                event(
                    EventKind::BreakerCleared,
                    Severity::Warning,
                    format!("breaker {name} reset {who}; it was: {was}"),
                )
                .dedup(format!("breaker:{name}")),
            ]
        }
    })
}

/// Issues a command: applied to the state it read, with its event, in one unit of work; re-applied after a
/// concurrent change.
pub async fn issue(
    store: &dyn Store,
    command: &Command,
    issuer: Issuer,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<CommandOutcome, CommandError> {
    let mut refusal = None;
    let (state, event_ids) = mutate_state(store, None, |st| match apply(st, command, issuer, reason, now) {
        Ok(events) => events,
        Err(e) => {
            refusal = Some(e);
            Vec::new()
        }
    })
    .await?;
    match refusal {
        Some(e) => Err(e),
        None => Ok(CommandOutcome { state, event_ids }),
    }
}

/// Changes the bot state with `change`, which edits the state it is given and returns the events that report
/// the edit. The change is applied to the freshly read state and saved only over the version it read; after a
/// concurrent write it is applied again to the newer state. With `fence`, the write is refused once the run's
/// claim was taken over. Nothing is written when the change leaves the state as it was and has no events.
pub async fn mutate_state<F>(
    store: &dyn Store,
    fence: Option<&RunFence>,
    change: F,
) -> Result<(BotState, Vec<i64>), StoreError>
where
    F: FnMut(&mut BotState) -> Vec<NewEvent> + Send,
{
    mutate_state_with(store, fence, &[], change).await
}

/// A write that belongs with a state change.
#[derive(Debug, Clone, Copy)]
pub enum StateWrite<'a> {
    /// A position taken over with the change (holdings adopted at the first reconcile).
    Position(&'a Position),
    /// The equity the change's figures come from (a cycle's closing snapshot).
    Equity(&'a EquitySnapshot),
}

/// [`mutate_state`] that also makes `writes` in the same unit of work, so they are never stored without the
/// state change, or it without them.
pub async fn mutate_state_with<F>(
    store: &dyn Store,
    fence: Option<&RunFence>,
    writes: &[StateWrite<'_>],
    mut change: F,
) -> Result<(BotState, Vec<i64>), StoreError>
where
    F: FnMut(&mut BotState) -> Vec<NewEvent> + Send,
{
    let mut last = None;
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            // Lost a race: step aside a little (jittered, growing) so one of the racers gets through.
            use std::hash::{BuildHasher, Hasher};
            let jitter = std::hash::RandomState::new().build_hasher().finish() % 1_000;
            tokio::time::sleep(std::time::Duration::from_micros(jitter * u64::from(attempt.min(8)))).await;
        }
        let read = store.load_state_versioned().await?;
        let mut state = read.value.clone();
        let events = change(&mut state);
        if events.is_empty() && state == read.value && writes.is_empty() {
            return Ok((state, Vec::new()));
        }
        let mut uow = store.begin().await?;
        if let Some(f) = fence {
            uow.fence(f).await?;
        }
        for w in writes {
            match w {
                StateWrite::Position(p) => uow.save_position(p).await?,
                StateWrite::Equity(e) => uow.insert_equity(e).await?,
            }
        }
        match uow.save_state(&state, read.version).await {
            Ok(_) => {}
            Err(StoreError::Conflict(m)) => {
                last = Some(m);
                continue;
            }
            Err(e) => return Err(e),
        }
        for e in events {
            uow.append(e);
        }
        match uow.commit().await {
            Ok(ids) => return Ok((state, ids)),
            Err(StoreError::Conflict(m)) => last = Some(m),
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict(format!(
        "bot state changed concurrently {MAX_ATTEMPTS} times in a row: {}",
        last.unwrap_or_default()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn pause_resume_kill_move_the_trading_mode() {
        let mut st = BotState::default();
        let ev = apply(&mut st, &Command::Pause, Issuer::Cli, "maintenance", now()).unwrap();
        assert_eq!(st.trading, TradingMode::EntriesPaused);
        assert_eq!(ev[0].kind, EventKind::TradingPaused);
        assert_eq!(ev[0].payload["issuer"], "cli");
        assert_eq!(ev[0].payload["reason"], "maintenance");
        assert!(apply(&mut st, &Command::Pause, Issuer::Cli, "again", now()).is_err(), "pause twice is refused");
        apply(&mut st, &Command::Kill { cancel_orders: true, flatten: true }, Issuer::Telegram, "x", now()).unwrap();
        assert_eq!((st.trading, st.flatten), (TradingMode::Halted, true));
        apply(&mut st, &Command::Resume, Issuer::Http, "ok", now()).unwrap();
        assert_eq!((st.trading, st.flatten), (TradingMode::Active, false));
        assert!(apply(&mut st, &Command::Resume, Issuer::Http, "ok", now()).is_err());
    }

    #[test]
    fn resets_clear_only_what_is_set() {
        let mut st = BotState { safe_mode: true, safe_mode_reason: Some("drift".into()), ..Default::default() };
        st.tripped.insert("daily_loss".into(), "daily loss 6%".into());
        let err = apply(&mut st, &Command::ResetBreaker { name: "weekly_loss".into() }, Issuer::Cli, "r", now());
        assert!(err.unwrap_err().to_string().contains("tripped: daily_loss"));
        apply(&mut st, &Command::ResetBreaker { name: "daily_loss".into() }, Issuer::Cli, "r", now()).unwrap();
        assert!(st.tripped.is_empty());
        let ev = apply(&mut st, &Command::ResetSafeMode, Issuer::Cli, "checked balances", now()).unwrap();
        assert!(!st.safe_mode && st.safe_mode_reason.is_none());
        assert_eq!(ev[0].kind, EventKind::SafeModeOff);
        assert!(apply(&mut st, &Command::ResetSafeMode, Issuer::Cli, "again", now()).is_err());
    }
}
