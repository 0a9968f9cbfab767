//! RiskCheck: the kill switch, persisted safe mode, daily and weekly loss breakers, the drawdown breaker and
//! stop-loss / take-profit on open positions. It runs first; if it blocks entries, the cycle goes straight to
//! Execution with exits only, before any market data is fetched.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::book::Book;
use super::stage::{CycleContext, Stage, StageError, StageName};
use crate::control::mutate_state;
use crate::domain::Symbol;
use crate::ports::{BotState, EventKind, NewEvent, Severity, Store, TradingMode};

/// Risk limits, as configured. Percentages are of equity (5 means 5 %).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskLimits {
    /// Loss since the UTC day's start that blocks entries for the rest of the day.
    pub max_daily_loss_pct: Decimal,
    /// Loss since the ISO week's start (Monday 00:00 UTC) that blocks entries for the rest of the week.
    pub max_weekly_loss_pct: Decimal,
    /// Drawdown from peak equity that puts the bot in safe mode until a human clears it.
    pub max_drawdown_pct: Decimal,
    /// Loss from entry that closes a position; `None` disables.
    pub stop_loss_pct: Option<Decimal>,
    /// Gain from entry that closes a position; `None` disables.
    pub take_profit_pct: Option<Decimal>,
    /// A file whose mere existence blocks all entries (touch it to stop the bot trading).
    pub kill_switch_file: PathBuf,
    /// Largest single buy as a share of equity (in %); a larger one is refused, not reduced: an order that big is
    /// a sizing error, not a trade.
    pub max_order_equity_pct: Decimal,
    /// Least time between two entries (buys) in one symbol, in seconds; 0 turns the limit off.
    pub min_entry_interval_secs: u64,
    /// Most entries (buys) per UTC day over all symbols; 0 turns the limit off.
    pub max_entries_per_day: u32,
    /// Consecutive failed exchange calls that stop entries until a clean reconciliation; 0 turns it off.
    pub max_api_failures: u32,
    /// How long the market stream may be down before entries stop (exits still run), in seconds; 0 turns it off.
    pub max_stream_down_secs: u64,
    /// Most orders (buys and sells) per UTC day before entries stop for the day: the canary's trade count limit,
    /// set from `live.max_trades_per_day` in mode live; 0 = none.
    #[serde(skip)]
    pub max_trades_per_day: u32,
}

impl Default for RiskLimits {
    fn default() -> Self {
        Self {
            max_daily_loss_pct: Decimal::from(5),
            max_weekly_loss_pct: Decimal::from(10),
            max_drawdown_pct: Decimal::from(20),
            stop_loss_pct: Some(Decimal::from(8)),
            take_profit_pct: None,
            kill_switch_file: PathBuf::from("data/KILL"),
            max_order_equity_pct: Decimal::ONE_HUNDRED,
            min_entry_interval_secs: 0,
            max_entries_per_day: 0,
            max_api_failures: 5,
            max_stream_down_secs: 300,
            max_trades_per_day: 0,
        }
    }
}

/// A position RiskCheck wants closed, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExitIntent {
    /// The pair.
    pub symbol: Symbol,
    /// Why (stop-loss, take-profit).
    pub reason: String,
}

/// RiskCheck's decision for this cycle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskVerdict {
    /// Equity at the check.
    pub equity: Decimal,
    /// False when any breaker, the kill switch or safe mode blocks new exposure.
    pub entries_allowed: bool,
    /// Why entries are blocked.
    pub blocked_by: Vec<String>,
    /// Positions to close regardless.
    pub exits: Vec<ExitIntent>,
}

/// The verdict, the updated state to persist, and the events to record.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskOutcome {
    /// The decision.
    pub verdict: RiskVerdict,
    /// State with period anchors, peak and tripped breakers updated.
    pub state: BotState,
    /// Breakers newly tripped or cleared, safe mode entered, stops triggered.
    pub events: Vec<NewEvent>,
}

/// The pure risk evaluation: no I/O, so every rule is unit-tested directly.
pub fn evaluate(
    limits: &RiskLimits,
    state: &BotState,
    book: &Book,
    now: DateTime<Utc>,
    kill_switch: bool,
) -> RiskOutcome {
    let mut st = state.clone();
    let equity = book.equity();
    let mut events = Vec::new();
    let hundred = Decimal::ONE_HUNDRED;
    let day = now.date_naive().and_time(NaiveTime::MIN).and_utc();
    let week = day - Duration::days(i64::from(now.weekday().num_days_from_monday()));

    let clear = |st: &mut BotState, events: &mut Vec<NewEvent>, name: &str, why: &str| {
        if let Some(was) = st.tripped.remove(name) {
            let msg = format!("breaker {name} cleared: {why} (it was: {was})");
            events.push(
                NewEvent::new(now, EventKind::BreakerCleared, Severity::Info, msg)
                    .payload(serde_json::json!({"breaker": name, "issuer": "system"}))
                    .dedup(format!("breaker:{name}")),
            );
        }
    };
    // New periods re-anchor their breakers.
    if st.day_start.as_ref().is_none_or(|(d, _)| *d != day) {
        st.day_start = Some((day, equity));
        clear(&mut st, &mut events, "daily_loss", "a new UTC day");
    }
    if st.week_start.as_ref().is_none_or(|(w, _)| *w != week) {
        st.week_start = Some((week, equity));
        clear(&mut st, &mut events, "weekly_loss", "a new week");
    }
    let peak = st.peak_equity.map_or(equity, |p| p.max(equity));
    st.peak_equity = Some(peak);

    let trip = |st: &mut BotState, events: &mut Vec<NewEvent>, kind: &str, severity: Severity, message: String| {
        if !st.tripped.contains_key(kind) {
            events.push(
                NewEvent::new(now, EventKind::BreakerTripped, severity, message.clone())
                    .payload(serde_json::json!({"breaker": kind, "equity": equity.to_string()}))
                    .dedup(format!("breaker:{kind}")),
            );
        }
        st.tripped.insert(kind.into(), message);
    };
    let loss_pct =
        |start: Decimal| if start > Decimal::ZERO { (Decimal::ONE - equity / start) * hundred } else { Decimal::ZERO };
    if let Some((_, start)) = st.day_start {
        let loss = loss_pct(start);
        if loss >= limits.max_daily_loss_pct {
            trip(
                &mut st,
                &mut events,
                "daily_loss",
                Severity::Critical,
                format!("daily loss {:.2}% >= {}%", loss, limits.max_daily_loss_pct),
            );
        }
    }
    if let Some((_, start)) = st.week_start {
        let loss = loss_pct(start);
        if loss >= limits.max_weekly_loss_pct {
            trip(
                &mut st,
                &mut events,
                "weekly_loss",
                Severity::Critical,
                format!("weekly loss {:.2}% >= {}%", loss, limits.max_weekly_loss_pct),
            );
        }
    }
    let dd = loss_pct(peak);
    if dd >= limits.max_drawdown_pct && !st.safe_mode {
        // The worst case: close everything and stop. A person resets safe mode and resumes, each with a reason.
        let why = format!("drawdown {:.2}% from peak {} >= {}%", dd, peak.round_dp(2), limits.max_drawdown_pct);
        st.safe_mode = true;
        st.safe_mode_reason = Some(why.clone());
        st.trading = TradingMode::Halted;
        st.flatten = true;
        events.push(
            NewEvent::new(now, EventKind::SafeModeOn, Severity::Emergency, format!("{why}: closing all positions and halting"))
                .payload(serde_json::json!({"cause": "max_drawdown", "peak": peak.to_string(), "equity": equity.to_string(), "flatten": true}))
                .dedup("safe_mode"),
        );
    }
    if kill_switch {
        trip(
            &mut st,
            &mut events,
            "kill_switch",
            Severity::Critical,
            format!("kill switch file {} present", limits.kill_switch_file.display()),
        );
    } else {
        clear(&mut st, &mut events, "kill_switch", "the kill switch file was removed");
    }

    let mut exits = Vec::new();
    for p in book.held() {
        let Some(mark) = book.marks.get(&p.symbol) else { continue };
        let ret = p.unrealized_return(*mark) * hundred;
        let hit = match (limits.stop_loss_pct, limits.take_profit_pct) {
            (Some(sl), _) if ret <= -sl => {
                Some((EventKind::StopLoss, format!("stop-loss: {:.2}% from entry {} <= -{sl}%", ret, p.avg_price)))
            }
            (_, Some(tp)) if ret >= tp => {
                Some((EventKind::TakeProfit, format!("take-profit: {:+.2}% from entry {} >= {tp}%", ret, p.avg_price)))
            }
            _ if st.flatten => Some((EventKind::TradingKilled, "kill: closing all positions".to_owned())),
            _ => None,
        };
        if let Some((kind, reason)) = hit {
            if kind != EventKind::TradingKilled {
                events.push(
                    NewEvent::new(now, kind, Severity::Warning, format!("{}: {reason}", p.symbol))
                        .symbol(&p.symbol)
                        .payload(serde_json::json!({"mark": mark.to_string(), "entry": p.avg_price.to_string()})),
                );
            }
            exits.push(ExitIntent { symbol: p.symbol.clone(), reason });
        }
    }
    if st.flatten && book.held().next().is_none() {
        // Everything the kill asked to close is closed.
        st.flatten = false;
    }

    let blocked_by = blocked_by(&st);
    RiskOutcome {
        verdict: RiskVerdict { equity, entries_allowed: blocked_by.is_empty(), blocked_by, exits },
        state: st,
        events,
    }
}

/// Why `state` blocks entries: safe mode, a pause or kill, then every tripped breaker; empty when entries are
/// allowed. RiskCheck decides on it at the start of a cycle and Execution again before every order.
pub fn blocked_by(state: &BotState) -> Vec<String> {
    let mut why = Vec::new();
    if state.safe_mode {
        why.push(format!("safe mode: {}", state.safe_mode_reason.as_deref().unwrap_or("set by operator")));
    }
    match state.trading {
        TradingMode::Active => {}
        TradingMode::EntriesPaused => why.push("entries paused by an operator".into()),
        TradingMode::Halted => why.push("halted (killed) by an operator".into()),
    }
    why.extend(state.tripped.values().cloned());
    why
}

/// The breaker that consecutive exchange failures trip; a clean reconciliation clears it.
pub const API_FAILURE_BREAKER: &str = "api_failures";
/// The breaker a market stream down for too long trips; it clears when the stream is back.
pub const STREAM_BREAKER: &str = "stream_down";

/// Why a buy of `symbol` may not be placed now under the frequency limits (minimum interval per symbol,
/// entries per day, the canary's trades per day), or `None`. Exits are never limited.
pub fn entry_limit(limits: &RiskLimits, state: &BotState, symbol: &Symbol, now: DateTime<Utc>) -> Option<String> {
    let today = now.date_naive().and_time(NaiveTime::MIN).and_utc();
    if let Some(c) = state.day_counts.as_ref().filter(|c| c.day == Some(today)) {
        if limits.max_entries_per_day > 0 && c.entries >= limits.max_entries_per_day {
            return Some(format!("max entries per day ({}) reached", limits.max_entries_per_day));
        }
        if limits.max_trades_per_day > 0 && c.trades >= limits.max_trades_per_day {
            return Some(format!("daily trade limit ({}) reached", limits.max_trades_per_day));
        }
    }
    if limits.min_entry_interval_secs > 0
        && let Some(last) = state.last_entry.get(symbol.as_str())
    {
        let next = *last + Duration::seconds(i64::try_from(limits.min_entry_interval_secs).unwrap_or(i64::MAX / 2_000));
        if now < next {
            return Some(format!("{symbol} entered at {last}; the next entry is allowed from {next}"));
        }
    }
    None
}

/// Counts an order placed at `now` in `state`: a trade, and for a buy an entry of its symbol.
pub fn count_order(state: &mut BotState, symbol: &Symbol, buy: bool, now: DateTime<Utc>) {
    let today = now.date_naive().and_time(NaiveTime::MIN).and_utc();
    let c = state.day_counts.get_or_insert_with(Default::default);
    if c.day != Some(today) {
        *c = crate::ports::DayCounts { day: Some(today), entries: 0, trades: 0 };
    }
    c.trades += 1;
    if buy {
        c.entries += 1;
        state.last_entry.insert(symbol.as_str().to_owned(), now);
    }
}

/// The market-stream breaker: trips once the stream has been down (since `down_since`) for `limit_secs`, and
/// clears as soon as it is up again. Entries stop while it is tripped; exits still run.
pub fn stream_watch(
    state: &mut BotState,
    down_since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    limit_secs: u64,
) -> Vec<NewEvent> {
    let limit = Duration::seconds(i64::try_from(limit_secs).unwrap_or(i64::MAX / 2_000));
    match down_since {
        Some(since) if limit_secs > 0 && now - since >= limit => {
            if state.tripped.contains_key(STREAM_BREAKER) {
                return Vec::new();
            }
            let why = format!("market stream down since {since} (over {limit_secs} s): no entries until it is back");
            state.tripped.insert(STREAM_BREAKER.into(), why.clone());
            vec![
                NewEvent::new(now, EventKind::BreakerTripped, Severity::Critical, why)
                    .payload(serde_json::json!({"breaker": STREAM_BREAKER, "down_since": since}))
                    .dedup(format!("breaker:{STREAM_BREAKER}")),
            ]
        }
        Some(_) => Vec::new(),
        None => match state.tripped.remove(STREAM_BREAKER) {
            Some(was) => vec![
                NewEvent::new(
                    now,
                    EventKind::BreakerCleared,
                    Severity::Info,
                    format!("breaker {STREAM_BREAKER} cleared: the market stream is back (it was: {was})"),
                )
                .payload(serde_json::json!({"breaker": STREAM_BREAKER, "issuer": "system"}))
                .dedup(format!("breaker:{STREAM_BREAKER}")),
            ],
            None => Vec::new(),
        },
    }
}

/// What RiskCheck needs: the book at the start of the cycle and the persisted state.
#[derive(Debug, Clone)]
pub struct RiskInput {
    /// Cash, positions, marks.
    pub book: Book,
    /// Persisted state.
    pub state: BotState,
}

/// The RiskCheck stage: evaluates and persists the updated state with its events in one unit of work before
/// returning, so a crash later in the cycle never forgets a tripped breaker. The evaluation is re-applied to the
/// newer state if another writer (a command, a reconcile) changed it meanwhile.
pub struct RiskCheck {
    limits: RiskLimits,
    store: Arc<dyn Store>,
}

impl RiskCheck {
    /// Builds the stage.
    pub fn new(limits: RiskLimits, store: Arc<dyn Store>) -> Self {
        Self { limits, store }
    }
}

#[async_trait]
impl Stage for RiskCheck {
    type Input = RiskInput;
    type Output = (RiskVerdict, BotState);

    fn name(&self) -> StageName {
        StageName::RiskCheck
    }

    async fn run(&self, cx: &CycleContext, input: RiskInput) -> Result<Self::Output, StageError> {
        let kill = self.limits.kill_switch_file.exists();
        let mut verdict = None;
        let run_id = cx.run_id.to_string();
        let (state, _) = mutate_state(self.store.as_ref(), cx.fence.as_ref(), |st| {
            let out = evaluate(&self.limits, st, &input.book, cx.now, kill);
            *st = out.state;
            verdict = Some(out.verdict);
            out.events.into_iter().map(|e| e.run(run_id.clone())).collect()
        })
        .await?;
        let verdict = verdict
            .ok_or_else(|| StageError::halt(crate::ports::FailureKind::Strategy, "risk evaluation did not run"))?;
        for b in &verdict.blocked_by {
            tracing::warn!("entries blocked: {b}");
        }
        Ok((verdict, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Position;
    use rust_decimal_macros::dec;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn book(cash: Decimal, qty: Decimal, avg: Decimal, mark: Decimal) -> Book {
        let s = Symbol::new("BTCUSDT").unwrap();
        let mut b = Book { cash, ..Default::default() };
        b.positions.insert(s.clone(), Position { symbol: s.clone(), qty, avg_price: avg, realized_pnl: dec!(0) });
        b.marks.insert(s, mark);
        b
    }

    #[test]
    fn daily_breaker_trips_once_and_resets_next_day() {
        let lim = RiskLimits { stop_loss_pct: None, ..Default::default() };
        let a = evaluate(
            &lim,
            &BotState::default(),
            &book(dec!(1000), dec!(0), dec!(0), dec!(1)),
            t("2024-01-03T10:00:00Z"),
            false,
        );
        assert!(a.verdict.entries_allowed);
        assert_eq!(a.state.day_start, Some((t("2024-01-03T00:00:00Z"), dec!(1000))));
        assert_eq!(a.state.week_start.unwrap().0, t("2024-01-01T00:00:00Z"), "ISO week starts Monday");
        let b = evaluate(&lim, &a.state, &book(dec!(949), dec!(0), dec!(0), dec!(1)), t("2024-01-03T11:00:00Z"), false);
        assert!(!b.verdict.entries_allowed);
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].kind, EventKind::BreakerTripped);
        assert_eq!(b.events[0].payload["breaker"], "daily_loss");
        let c = evaluate(&lim, &b.state, &book(dec!(949), dec!(0), dec!(0), dec!(1)), t("2024-01-03T12:00:00Z"), false);
        assert!(c.events.is_empty(), "a tripped breaker is reported once");
        assert!(!c.verdict.entries_allowed);
        let d = evaluate(&lim, &c.state, &book(dec!(949), dec!(0), dec!(0), dec!(1)), t("2024-01-04T00:00:00Z"), false);
        assert!(d.verdict.entries_allowed, "a new day re-anchors the daily breaker");
    }

    #[test]
    fn drawdown_latches_safe_mode() {
        let lim = RiskLimits { max_daily_loss_pct: dec!(100), max_weekly_loss_pct: dec!(100), ..Default::default() };
        let mut st = BotState { peak_equity: Some(dec!(2000)), ..Default::default() };
        let a = evaluate(&lim, &st, &book(dec!(1600), dec!(0), dec!(0), dec!(1)), t("2024-01-03T10:00:00Z"), false);
        assert!(!a.verdict.entries_allowed);
        assert!(a.state.safe_mode);
        st = a.state;
        let b = evaluate(&lim, &st, &book(dec!(3000), dec!(0), dec!(0), dec!(1)), t("2024-01-05T10:00:00Z"), false);
        assert!(!b.verdict.entries_allowed, "safe mode stays until a human clears it");
        assert!(b.verdict.blocked_by[0].starts_with("safe mode"));
    }

    #[test]
    fn max_drawdown_flattens_and_halts() {
        let lim = RiskLimits { max_daily_loss_pct: dec!(100), max_weekly_loss_pct: dec!(100), ..Default::default() };
        let st = BotState { peak_equity: Some(dec!(2000)), ..Default::default() };
        // Holding 1 at a mark of 100 (entry 100: no stop-loss) with 1500 cash: equity 1600, 20 % below the peak.
        let a = evaluate(&lim, &st, &book(dec!(1500), dec!(1), dec!(100), dec!(100)), t("2024-01-03T10:00:00Z"), false);
        assert_eq!(a.state.trading, TradingMode::Halted, "halted");
        assert!(a.state.flatten && a.state.safe_mode);
        assert_eq!(a.verdict.exits.len(), 1, "every position is closed: {:?}", a.verdict.exits);
        assert_eq!(a.events[0].severity, Severity::Emergency);
        // Just above the limit: nothing happens.
        let b = evaluate(&lim, &st, &book(dec!(1501), dec!(1), dec!(100), dec!(100)), t("2024-01-03T10:00:00Z"), false);
        assert_eq!(b.state.trading, TradingMode::Active);
        assert!(b.verdict.exits.is_empty() && b.verdict.entries_allowed);
    }

    #[test]
    fn entry_frequency_limits() {
        let btc = Symbol::new("BTCUSDT").unwrap();
        let eth = Symbol::new("ETHUSDT").unwrap();
        let lim = RiskLimits { min_entry_interval_secs: 4 * 3600, max_entries_per_day: 2, ..Default::default() };
        let mut st = BotState::default();
        let t0 = t("2024-01-03T10:00:00Z");
        assert_eq!(entry_limit(&lim, &st, &btc, t0), None);
        count_order(&mut st, &btc, true, t0);
        let soon = entry_limit(&lim, &st, &btc, t("2024-01-03T13:59:59Z")).unwrap();
        assert!(soon.contains("next entry is allowed from 2024-01-03 14:00:00"), "{soon}");
        assert_eq!(entry_limit(&lim, &st, &btc, t("2024-01-03T14:00:00Z")), None, "after 4 h");
        assert_eq!(entry_limit(&lim, &st, &eth, t0), None, "per symbol");
        count_order(&mut st, &eth, false, t0);
        assert_eq!(entry_limit(&lim, &st, &eth, t0), None, "a sell is not an entry");
        count_order(&mut st, &eth, true, t0);
        let day = entry_limit(&lim, &st, &Symbol::new("XRPUSDT").unwrap(), t0).unwrap();
        assert!(day.contains("max entries per day (2)"), "{day}");
        assert_eq!(entry_limit(&lim, &st, &Symbol::new("XRPUSDT").unwrap(), t("2024-01-04T00:00:00Z")), None);
        // The canary's trade count: sells count too.
        let canary = RiskLimits { max_trades_per_day: 3, ..Default::default() };
        let why = entry_limit(&canary, &st, &btc, t0).unwrap();
        assert!(why.contains("daily trade limit (3)"), "{why}");
        let off = RiskLimits::default();
        assert_eq!(entry_limit(&off, &st, &btc, t0), None, "0 turns the limits off");
    }

    #[test]
    fn stream_breaker_trips_after_the_limit_and_clears_when_back() {
        let mut st = BotState::default();
        let since = t("2024-01-03T10:00:00Z");
        assert!(stream_watch(&mut st, Some(since), t("2024-01-03T10:04:59Z"), 300).is_empty());
        assert!(super::blocked_by(&st).is_empty());
        let ev = stream_watch(&mut st, Some(since), t("2024-01-03T10:05:00Z"), 300);
        assert_eq!(ev[0].kind, EventKind::BreakerTripped);
        assert!(super::blocked_by(&st)[0].contains("market stream down"));
        assert!(stream_watch(&mut st, Some(since), t("2024-01-03T10:09:00Z"), 300).is_empty(), "reported once");
        let ev = stream_watch(&mut st, None, t("2024-01-03T10:10:00Z"), 300);
        assert_eq!(ev[0].kind, EventKind::BreakerCleared);
        assert!(st.tripped.is_empty());
        assert!(stream_watch(&mut st, Some(since), t("2024-01-04T00:00:00Z"), 0).is_empty(), "0 is off");
    }

    #[test]
    fn kill_switch_blocks_entries_and_stops_become_exits() {
        let lim = RiskLimits { take_profit_pct: Some(dec!(10)), ..Default::default() };
        let a = evaluate(
            &lim,
            &BotState::default(),
            &book(dec!(0), dec!(1), dec!(100), dec!(91)),
            t("2024-01-03T10:00:00Z"),
            true,
        );
        assert!(!a.verdict.entries_allowed);
        assert_eq!(a.verdict.exits.len(), 1);
        assert!(a.verdict.exits[0].reason.starts_with("stop-loss"));
        let b = evaluate(
            &lim,
            &BotState::default(),
            &book(dec!(0), dec!(1), dec!(100), dec!(110)),
            t("2024-01-03T10:00:00Z"),
            false,
        );
        assert!(b.verdict.entries_allowed);
        assert!(b.verdict.exits[0].reason.starts_with("take-profit"));
        let c = evaluate(
            &lim,
            &BotState::default(),
            &book(dec!(0), dec!(1), dec!(100), dec!(95)),
            t("2024-01-03T10:00:00Z"),
            false,
        );
        assert!(c.verdict.exits.is_empty());
    }
}
