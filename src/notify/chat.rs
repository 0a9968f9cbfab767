//! Commanding the bot from Telegram. One poller per bot token reads `getUpdates` (a lease in the store decides
//! which replica, so two never fight over the updates); a 409 conflict backs off and is reported instead of
//! looping. Only the configured chats are answered: any other chat gets nothing at all, and the attempt is
//! logged and recorded (once per chat per hour). State changes go through the commands every other issuer uses,
//! with the chat id in the reason; `/kill` and `/reset_safe_mode` ask for a confirmation button first.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use mcbot_schedules::Runtime;
use mcbot_stages::Clock;
use mcbot_stages::control::{Command, CommandError, Issuer, issue};
use mcbot_stages::domain::{Symbol, Timeframe};
use mcbot_stages::ports::{DeliveryStore, EventKind, Exchange, NewEvent, NotifyError, Severity, Store, StoreError};
use rust_decimal::Decimal;
use teloxide_core::payloads::{AnswerCallbackQuerySetters, GetUpdatesSetters, SendMessageSetters};
use teloxide_core::requests::{Request, Requester};
use teloxide_core::types::{
    BotCommand, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, ParseMode, Update, UpdateKind,
};
use teloxide_core::{ApiError, Bot, RequestError};

use super::secrets::Scrubber;
use super::telegram::{TelegramError, TelegramSettings, bot, classify, escape};
use crate::store::SqlStore;

/// The commands registered with `setMyCommands`, with their one-line help.
pub const COMMANDS: &[(&str, &str)] = &[
    ("status", "mode, trading state, open positions with entry, last price and unrealized P&L"),
    ("balance", "equity and cash"),
    ("profit", "realized and unrealized P&L, trades, win rate, profit factor, max drawdown, best symbol"),
    ("trades", "the last fills: /trades [n]"),
    ("health", "database and exchange reachability, data freshness, the last job runs"),
    ("jobs", "jobs and their next runs"),
    ("pause", "stop new entries (exits still run)"),
    ("stopentry", "same as /pause"),
    ("resume", "trade again"),
    ("kill", "halt: no entries, open orders cancelled (asks to confirm)"),
    ("reset_safe_mode", "clear safe mode: /reset_safe_mode <reason> (asks to confirm)"),
    ("daily", "the last day's report; /daily n lists the last n days"),
    ("weekly", "the last week's report; /weekly n lists the last n weeks"),
    ("monthly", "the last month's report; /monthly n lists the last n months"),
    ("report", "a full report: /report daily|weekly|monthly"),
    ("performance", "the last 30 days: return, Sharpe, Sortino, drawdown, P&L per strategy"),
    ("ack", "acknowledge the emergency: its repeats stop"),
    ("mute", "silence a kind for a while: /mute <kind|all> <30m|2h|1d|off> (never critical ones)"),
    ("version", "the running version"),
    ("help", "this list"),
];

/// What the bot answers: HTML text and, for confirmations, buttons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Telegram HTML.
    pub html: String,
    /// Buttons: (label, callback data).
    pub buttons: Vec<(String, String)>,
}

impl Reply {
    fn text(html: impl Into<String>) -> Self {
        Self { html: html.into(), buttons: Vec::new() }
    }
}

/// What the chat commands act on.
pub struct ChatControl {
    allowed: BTreeSet<i64>,
    store: Arc<dyn Store>,
    exchange: Arc<dyn Exchange>,
    clock: Arc<dyn Clock>,
    runtime: Option<Arc<Runtime>>,
    mode: String,
    pending_reset: Mutex<HashMap<i64, String>>,
    refused: Mutex<HashMap<i64, DateTime<Utc>>>,
    reports: Option<mcbot_schedules::reports::ReportSettings>,
    outbox: Option<Arc<dyn DeliveryStore>>,
    market: Vec<Symbol>,
    timeframe: Option<Timeframe>,
}

impl ChatControl {
    /// Commands from `allowed` chats, acting on `store` and `exchange`; `runtime` for `/jobs`.
    pub fn new(
        allowed: impl IntoIterator<Item = i64>,
        store: Arc<dyn Store>,
        exchange: Arc<dyn Exchange>,
        clock: Arc<dyn Clock>,
        runtime: Option<Arc<Runtime>>,
        mode: &str,
    ) -> Self {
        Self {
            allowed: allowed.into_iter().collect(),
            store,
            exchange,
            clock,
            runtime,
            mode: mode.to_owned(),
            pending_reset: Mutex::default(),
            refused: Mutex::default(),
            reports: None,
            outbox: None,
            market: Vec::new(),
            timeframe: None,
        }
    }

    /// The outbox `/ack` and `/mute` act on.
    pub fn with_outbox(mut self, outbox: Arc<dyn DeliveryStore>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// The traded symbols and timeframe, for `/health`'s data freshness and exchange check.
    pub fn with_market(mut self, symbols: Vec<Symbol>, timeframe: Timeframe) -> Self {
        self.market = symbols;
        self.timeframe = Some(timeframe);
        self
    }

    /// Answers the report commands (`/daily`, `/weekly`, `/monthly`, `/report`, `/performance`) with `settings`.
    pub fn with_reports(mut self, settings: mcbot_schedules::reports::ReportSettings) -> Self {
        self.reports = Some(settings);
        self
    }

    /// True for a configured chat.
    pub fn allowed(&self, chat: i64) -> bool {
        self.allowed.contains(&chat)
    }

    /// Logs and records a refused chat, at most once per chat per hour (the alert route's cooldown rate-limits
    /// the message about it further).
    pub async fn refuse(&self, chat: i64, what: &str) -> Result<(), StoreError> {
        let now = self.clock.now();
        {
            let mut seen = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            if seen.get(&chat).is_some_and(|t| now - *t < Duration::hours(1)) {
                return Ok(());
            }
            seen.insert(chat, now);
        }
        let first: String = what.chars().take(40).collect();
        tracing::warn!(chat, "a chat that is not configured tried to use the bot: {first:?}");
        let e = NewEvent::new(
            now,
            EventKind::UnauthorizedChat,
            Severity::Warning,
            format!("chat {chat} is not configured and was ignored (it sent {first:?})"),
        )
        .dedup(format!("unauthorized_chat:{chat}"))
        .payload(serde_json::json!({"chat_id": chat}));
        self.store.append_events(vec![e]).await?;
        Ok(())
    }

    /// The answer to `text` from an allowed chat.
    pub async fn command(&self, chat: i64, text: &str) -> Result<Reply, StoreError> {
        let mut words = text.split_whitespace();
        let head = words.next().unwrap_or_default();
        let name = head.trim_start_matches('/').split('@').next().unwrap_or_default().to_ascii_lowercase();
        let rest: Vec<&str> = words.collect();
        let reason = format!("telegram chat {chat}");
        Ok(match name.as_str() {
            "help" | "start" => {
                let lines: Vec<String> = COMMANDS.iter().map(|(c, d)| format!("/{c} — {}", escape(d))).collect();
                Reply::text(lines.join("\n"))
            }
            "version" => Reply::text(format!("mcbot {}", env!("CARGO_PKG_VERSION"))),
            "status" => self.status().await?,
            "balance" => self.balance().await?,
            "profit" => self.profit().await?,
            "trades" => {
                let n = match rest.first().map(|n| n.parse::<usize>()) {
                    None => 10,
                    Some(Ok(n)) if (1..=50).contains(&n) => n,
                    Some(_) => return Ok(Reply::text("usage: /trades [n], n from 1 to 50")),
                };
                self.trades(n).await?
            }
            "health" => self.health().await?,
            "jobs" => self.jobs(),
            "pause" | "stopentry" => self.issue(Command::Pause, &reason).await?,
            "resume" => self.issue(Command::Resume, &reason).await?,
            "kill" => Reply {
                html: "<b>Kill?</b> No new entries; open orders are cancelled. Flatten also closes every position."
                    .into(),
                buttons: vec![
                    ("Kill".into(), "kill:halt".into()),
                    ("Kill and flatten".into(), "kill:flatten".into()),
                    ("Cancel".into(), "cancel".into()),
                ],
            },
            "reset_safe_mode" => {
                if rest.is_empty() {
                    return Ok(Reply::text("usage: /reset_safe_mode &lt;reason&gt; — say what you checked"));
                }
                let why = rest.join(" ");
                self.pending_reset.lock().unwrap_or_else(|p| p.into_inner()).insert(chat, why.clone());
                Reply {
                    html: format!("<b>Clear safe mode?</b> Reason: {}", escape(&why)),
                    buttons: vec![("Clear safe mode".into(), "reset:yes".into()), ("Cancel".into(), "cancel".into())],
                }
            }
            "daily" | "weekly" | "monthly" | "report" | "performance" => {
                let Some(settings) = &self.reports else { return Ok(Reply::text("reports are not set up here")) };
                let now = self.clock.now();
                let answer = crate::reports::chat::answer(self.store.as_ref(), settings, now, &name, &rest).await?;
                Reply::text(answer.unwrap_or_default())
            }
            "ack" => self.ack(chat).await?,
            "mute" => self.mute(chat, &rest).await?,
            _ => Reply::text(format!("unknown command {}: /help lists them", escape(head))),
        })
    }

    /// The answer to a button press from an allowed chat.
    pub async fn button(&self, chat: i64, data: &str) -> Result<Reply, StoreError> {
        let reason = format!("telegram chat {chat}");
        Ok(match data {
            "kill:halt" | "kill:flatten" => {
                let flatten = data == "kill:flatten";
                let reply = self.issue(Command::Kill { cancel_orders: true, flatten }, &reason).await?;
                let (canceled, failed) = crate::commands::control::cancel_all(
                    self.store.as_ref(),
                    self.exchange.as_ref(),
                    self.clock.as_ref(),
                )
                .await?;
                let mut html = reply.html;
                html.push_str(&format!("\nopen orders cancelled: {}", canceled.len()));
                for f in failed {
                    html.push_str(&format!("\nnot cancelled: {}", escape(&f)));
                }
                Reply::text(html)
            }
            "reset:yes" => {
                let why = self.pending_reset.lock().unwrap_or_else(|p| p.into_inner()).remove(&chat);
                match why {
                    Some(why) => self.issue(Command::ResetSafeMode, &format!("{reason}: {why}")).await?,
                    None => Reply::text("nothing to confirm: send /reset_safe_mode &lt;reason&gt; again"),
                }
            }
            "ack" => self.ack(chat).await?,
            "cancel" => {
                self.pending_reset.lock().unwrap_or_else(|p| p.into_inner()).remove(&chat);
                Reply::text("cancelled: nothing changed")
            }
            _ => Reply::text("this button is no longer valid"),
        })
    }

    async fn issue(&self, command: Command, reason: &str) -> Result<Reply, StoreError> {
        match issue(self.store.as_ref(), &command, Issuer::Telegram, reason, self.clock.now()).await {
            Ok(outcome) => {
                let st = &outcome.state;
                Ok(Reply::text(format!(
                    "done: trading <b>{}</b>{}, safe mode {}",
                    st.trading.as_str(),
                    if st.flatten { " (closing all positions at the next cycle)" } else { "" },
                    if st.safe_mode { "on" } else { "off" }
                )))
            }
            Err(CommandError::NotApplicable(why)) => Ok(Reply::text(format!("nothing changed: {}", escape(&why)))),
            Err(CommandError::Store(e)) => Err(e),
        }
    }

    /// Acknowledges every repeating emergency, recorded as an event with the chat as its issuer.
    async fn ack(&self, chat: i64) -> Result<Reply, StoreError> {
        let Some(outbox) = &self.outbox else { return Ok(Reply::text("no notification outbox in this process")) };
        let now = self.clock.now();
        let n = outbox.acknowledge(now).await?;
        tracing::info!(chat, acknowledged = n, "emergency acknowledged from the chat");
        let e = NewEvent::new(
            now,
            EventKind::AlertAcknowledged,
            Severity::Info,
            format!("{n} repeating alert message(s) acknowledged by telegram chat {chat}"),
        )
        .payload(serde_json::json!({"issuer": "telegram", "reason": format!("telegram chat {chat}"), "closed": n}));
        self.store.append_events(vec![e]).await?;
        Ok(Reply::text(if n == 0 {
            "nothing to acknowledge: no emergency is repeating".to_owned()
        } else {
            "acknowledged: the repeats stop".to_owned()
        }))
    }

    /// `/mute <kind|all> <duration|off>`; without arguments, the mutes in force.
    async fn mute(&self, chat: i64, args: &[&str]) -> Result<Reply, StoreError> {
        const USAGE: &str = "usage: /mute &lt;kind|all&gt; &lt;30m|2h|1d|off&gt;, kinds as in the messages \
                             (stale_data, order_rejected ...); critical and emergency messages are never muted";
        let Some(outbox) = &self.outbox else { return Ok(Reply::text("no notification outbox in this process")) };
        let now = self.clock.now();
        let [kind, span] = args else {
            if !args.is_empty() {
                return Ok(Reply::text(USAGE));
            }
            let mutes = outbox.mutes(now).await?;
            if mutes.is_empty() {
                return Ok(Reply::text(format!("nothing is muted\n{USAGE}")));
            }
            let lines: Vec<String> = mutes
                .iter()
                .map(|(k, u)| format!("{} muted until {}", escape(k), u.format("%Y-%m-%d %H:%M UTC")))
                .collect();
            return Ok(Reply::text(lines.join("\n")));
        };
        let kind = kind.to_ascii_lowercase();
        if kind != "all" && EventKind::parse(&kind).is_none() {
            return Ok(Reply::text(format!("unknown kind {}\n{USAGE}", escape(&kind))));
        }
        let until = if span.eq_ignore_ascii_case("off") {
            now
        } else {
            match parse_span(span) {
                Some(d) => now + d,
                None => return Ok(Reply::text(USAGE)),
            }
        };
        let (what, text) = if until > now {
            let when = until.format("%Y-%m-%d %H:%M UTC");
            (
                format!("{kind} muted until {when} by telegram chat {chat}"),
                format!("{} muted until {when}", escape(&kind)),
            )
        } else {
            (format!("{kind} unmuted by telegram chat {chat}"), format!("{} unmuted", escape(&kind)))
        };
        let e = NewEvent::new(now, EventKind::NotificationsMuted, Severity::Info, what).payload(serde_json::json!({
            "issuer": "telegram", "reason": format!("telegram chat {chat}"), "kind": kind, "until": until,
        }));
        outbox.set_mute(&kind, until, e).await?;
        Ok(Reply::text(text))
    }

    async fn status(&self) -> Result<Reply, StoreError> {
        let st = self.store.load_state().await?;
        let mut lines = vec![format!(
            "<b>mode</b> {} · <b>trading</b> {} · <b>safe mode</b> {}",
            escape(&self.mode),
            st.trading.as_str(),
            if st.safe_mode { "on" } else { "off" }
        )];
        if let Some(why) = &st.safe_mode_reason {
            lines.push(format!("safe mode reason: {}", escape(why)));
        }
        let positions: Vec<_> = self.store.positions().await?.into_iter().filter(|p| !p.qty.is_zero()).collect();
        if positions.is_empty() {
            lines.push("no open positions".into());
        }
        for p in positions {
            let mark = self.exchange.last_price(&p.symbol).await.ok();
            let upnl = mark.map(|m| ((m - p.avg_price) * p.qty).round_dp(2));
            lines.push(format!(
                "<b>{}</b> qty <code>{}</code> entry <code>{}</code> last <code>{}</code> uP&amp;L <code>{}</code>",
                escape(p.symbol.as_str()),
                p.qty,
                p.avg_price,
                mark.map_or("-".into(), |m| m.to_string()),
                upnl.map_or("-".into(), |u| u.to_string())
            ));
        }
        Ok(Reply::text(lines.join("\n")))
    }

    async fn balance(&self) -> Result<Reply, StoreError> {
        let st = self.store.load_state().await?;
        let eq = self.store.equity_before(DateTime::<Utc>::MAX_UTC).await?;
        Ok(Reply::text(format!(
            "<b>equity</b> <code>{}</code>\n<b>cash</b> <code>{}</code>",
            eq.map_or("-".into(), |e| e.equity.round_dp(2).to_string()),
            st.cash.map_or("-".into(), |c| c.round_dp(2).to_string())
        )))
    }

    async fn profit(&self) -> Result<Reply, StoreError> {
        let positions = self.store.positions().await?;
        let realized: Decimal = positions.iter().map(|p| p.realized_pnl).sum();
        let mut unrealized = Decimal::ZERO;
        let mut unpriced = Vec::new();
        for p in positions.iter().filter(|p| !p.qty.is_zero()) {
            match self.exchange.last_price(&p.symbol).await {
                Ok(m) => unrealized += (m - p.avg_price) * p.qty,
                Err(_) => unpriced.push(p.symbol.as_str().to_owned()),
            }
        }
        let fills = self.store.fills_between(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC).await?;
        let equity = self.store.equity_between(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC).await?;
        let f = super::profit::figures(&fills, &equity);
        let or_dash = |v: Option<Decimal>, unit: &str| v.map_or_else(|| "-".to_owned(), |v| format!("{v}{unit}"));
        let mut lines = vec![
            format!("<b>realized P&amp;L</b> <code>{}</code>", realized.round_dp(2)),
            format!("<b>unrealized P&amp;L</b> <code>{}</code>", unrealized.round_dp(2)),
            format!(
                "<b>trades</b> {} · <b>win rate</b> {} · <b>profit factor</b> {}",
                f.trades,
                or_dash(f.win_rate_pct(), " %"),
                or_dash(f.profit_factor(), "")
            ),
            format!("<b>max drawdown</b> <code>{} %</code>", f.max_drawdown_pct),
            format!(
                "<b>best symbol</b> {}",
                f.best_symbol()
                    .map_or_else(|| "-".to_owned(), |(s, p)| format!("{} <code>{}</code>", escape(s), p.round_dp(2)))
            ),
        ];
        if !unpriced.is_empty() {
            lines.push(format!("no price for {}: left out of unrealized", escape(&unpriced.join(", "))));
        }
        Ok(Reply::text(lines.join("\n")))
    }

    async fn trades(&self, n: usize) -> Result<Reply, StoreError> {
        let fills = self.store.fills_between(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC).await?;
        if fills.is_empty() {
            return Ok(Reply::text("no fills yet"));
        }
        let lines: Vec<String> = fills
            .iter()
            .rev()
            .take(n)
            .map(|f| {
                format!(
                    "{} <b>{}</b> {} <code>{}</code> @ <code>{}</code> fee <code>{}</code>",
                    f.ts.format("%m-%d %H:%M"),
                    escape(f.symbol.as_str()),
                    f.side.as_str(),
                    f.qty,
                    f.price,
                    f.fee
                )
            })
            .collect();
        Ok(Reply::text(lines.join("\n")))
    }

    async fn health(&self) -> Result<Reply, StoreError> {
        let now = self.clock.now();
        let db = match self.store.ping().await {
            Ok(()) => "reachable".to_owned(),
            Err(e) => format!("unreachable ({})", escape(&e.to_string())),
        };
        let mut lines = vec![format!("<b>database</b> {db}")];
        if let Some(first) = self.market.first() {
            let exchange = match self.exchange.last_price(first).await {
                Ok(_) => "reachable".to_owned(),
                Err(e) => format!("unreachable ({})", escape(&e.to_string())),
            };
            lines.push(format!("<b>exchange</b> {exchange}"));
        }
        if let Some(tf) = self.timeframe {
            let expected = tf.last_close(now);
            for s in &self.market {
                let newest = self.store.candles(s, tf, expected, 1).await?.pop();
                let line = match newest {
                    Some(c) => {
                        let close = c.close_time(tf);
                        let behind = (expected - close).num_minutes() / i64::from(tf.minutes().max(1));
                        let word = if behind <= 0 { "fresh" } else { "stale" };
                        format!("{word}, last bar {} ({behind} behind)", close.format("%m-%d %H:%M"))
                    }
                    None => "no bars stored yet".to_owned(),
                };
                lines.push(format!("<b>{}</b> data {line}", escape(s.as_str())));
            }
        }
        let runs = self.store.recent_runs(None, 6).await?;
        for r in runs {
            lines.push(format!("{} {} {}", escape(&r.job), r.scheduled_at.format("%m-%d %H:%M"), r.status.as_str()));
        }
        Ok(Reply::text(lines.join("\n")))
    }

    fn jobs(&self) -> Reply {
        let Some(rt) = &self.runtime else { return Reply::text("no job runtime in this process") };
        let lines: Vec<String> = rt
            .views()
            .iter()
            .map(|v| {
                format!(
                    "{} next {}",
                    escape(&v.name),
                    v.next_fire.map_or("-".into(), |t| t.format("%m-%d %H:%M:%S UTC").to_string())
                )
            })
            .collect();
        Reply::text(lines.join("\n"))
    }
}

/// "30m", "2h", "1d", "90s" as a duration (at most 30 days); `None` for anything else.
pub fn parse_span(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().ok()?;
    let d = match unit {
        "s" => Duration::seconds(n),
        "m" | "min" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        _ => return None,
    };
    (d > Duration::zero() && d <= Duration::days(30)).then_some(d)
}

/// How one poll went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// Another replica holds the poller lease: nothing was asked of Telegram.
    NotLeader,
    /// This many updates were handled.
    Handled(usize),
    /// Telegram answered 409: another process polls this token; back off.
    Conflict,
}

/// The one getUpdates poller of a bot token.
pub struct Poller {
    bot: Bot,
    control: Arc<ChatControl>,
    leases: Arc<SqlStore>,
    clock: Arc<dyn Clock>,
    holder: String,
    lease: String,
    long_poll_secs: u32,
    offset: Mutex<i32>,
    scrub: Arc<Scrubber>,
}

impl Poller {
    /// A poller for `s` holding the store lease as `holder`; `long_poll_secs` is getUpdates' `timeout`.
    pub fn new(
        s: &TelegramSettings,
        control: Arc<ChatControl>,
        leases: Arc<SqlStore>,
        clock: Arc<dyn Clock>,
        holder: String,
        long_poll_secs: u32,
        scrub: Arc<Scrubber>,
    ) -> Result<Self, TelegramError> {
        use sha2::Digest;
        // The lease is per token, named by a hash: the token itself never reaches the database.
        let digest = sha2::Sha256::digest(s.token.as_bytes());
        let lease = format!("telegram-poller:{}", hex::encode(&digest[..8]));
        Ok(Self { bot: bot(s)?, control, leases, clock, holder, lease, long_poll_secs, offset: Mutex::new(0), scrub })
    }

    /// The state key of this token's getUpdates offset (named by the token's hash, like the lease).
    fn offset_key(&self) -> String {
        format!("{}:offset", self.lease)
    }

    /// Registers the commands with Telegram (`setMyCommands`).
    pub async fn register_commands(&self) -> Result<(), NotifyError> {
        let cmds: Vec<BotCommand> = COMMANDS.iter().map(|(c, d)| BotCommand::new(*c, *d)).collect();
        self.bot.set_my_commands(cmds).send().await.map(|_| ()).map_err(|e| classify(&e, &self.scrub))
    }

    /// Takes (or renews) the poller lease and, when held, reads and handles one batch of updates.
    pub async fn poll_once(&self) -> Result<Polled, NotifyError> {
        let now = self.clock.now();
        let ttl = Duration::seconds(i64::from(self.long_poll_secs) + 60);
        let leader = self
            .leases
            .try_acquire_lease(&self.lease, &self.holder, now, ttl)
            .await
            .map_err(|e| NotifyError::transient(format!("poller lease: {e}")))?;
        if !leader {
            return Ok(Polled::NotLeader);
        }
        // The offset lives in the store: a restarted process, or the replica that took the lease over, neither
        // replays nor loses an update. It is saved after each update is handled, so a crash in between replays at
        // most that one.
        let store_err = |e: StoreError| NotifyError::transient(format!("chat offset: {e}"));
        let stored = self.leases.load_value(&self.offset_key()).await.map_err(store_err)?;
        let stored = stored.and_then(|v| v.as_i64()).and_then(|v| i32::try_from(v).ok()).unwrap_or(0);
        let offset = {
            let mut o = self.offset.lock().unwrap_or_else(|p| p.into_inner());
            *o = (*o).max(stored);
            *o
        };
        let updates = self.bot.get_updates().offset(offset).timeout(self.long_poll_secs).send().await;
        let updates = match updates {
            Ok(u) => u,
            Err(RequestError::Api(ApiError::TerminatedByOtherGetUpdates)) => return Ok(Polled::Conflict),
            Err(e) => return Err(classify(&e, &self.scrub)),
        };
        let mut n = 0;
        for u in &updates {
            let next = i32::try_from(u.id.0).unwrap_or(i32::MAX).saturating_add(1);
            if let Err(e) = self.handle(u).await {
                tracing::warn!("chat update not handled: {}", e.message);
            }
            *self.offset.lock().unwrap_or_else(|p| p.into_inner()) = next;
            self.leases.save_value(&self.offset_key(), serde_json::json!(next)).await.map_err(store_err)?;
            n += 1;
        }
        Ok(Polled::Handled(n))
    }

    async fn handle(&self, u: &Update) -> Result<(), NotifyError> {
        let store_err = |e: StoreError| NotifyError::transient(e.to_string());
        match &u.kind {
            UpdateKind::Message(m) => {
                let chat = m.chat.id.0;
                let text = m.text().unwrap_or_default();
                if !self.control.allowed(chat) {
                    return self.control.refuse(chat, text).await.map_err(store_err);
                }
                if !text.starts_with('/') {
                    return Ok(());
                }
                let reply = self.control.command(chat, text).await.map_err(store_err)?;
                self.send(chat, &reply).await
            }
            UpdateKind::CallbackQuery(q) => {
                let chat = q.message.as_ref().map_or(i64::MIN, |m| m.chat().id.0);
                let from = i64::try_from(q.from.id.0).unwrap_or(i64::MIN);
                if !self.control.allowed(chat) {
                    return self.control.refuse(chat.max(from), "a button").await.map_err(store_err);
                }
                // Every callback is answered, or the user's client keeps spinning.
                let _ = self.bot.answer_callback_query(q.id.clone()).text("ok").send().await;
                let reply =
                    self.control.button(chat, q.data.as_deref().unwrap_or_default()).await.map_err(store_err)?;
                if let Some(m) = &q.message {
                    // The question loses its buttons: a second press cannot repeat it.
                    let _ = self.bot.edit_message_text(ChatId(chat), m.id(), "answered").send().await;
                }
                self.send(chat, &reply).await
            }
            _ => Ok(()),
        }
    }

    async fn send(&self, chat: i64, reply: &Reply) -> Result<(), NotifyError> {
        let mut req = self.bot.send_message(ChatId(chat), reply.html.clone()).parse_mode(ParseMode::Html);
        if !reply.buttons.is_empty() {
            let row: Vec<InlineKeyboardButton> =
                reply.buttons.iter().map(|(t, d)| InlineKeyboardButton::callback(t.clone(), d.clone())).collect();
            req = req.reply_markup(InlineKeyboardMarkup::new(vec![row]));
        }
        req.send().await.map(|_| ()).map_err(|e| classify(&e, &self.scrub))
    }

    /// Registers the commands, then polls until `stop`: a replica without the lease checks again every few
    /// seconds; a 409 backs off (doubling up to 5 minutes) and is recorded once per conflict.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut registered = false;
        let mut backoff = std::time::Duration::from_secs(5);
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.poll_once().await {
                Ok(Polled::Handled(_)) => {
                    if !registered {
                        registered = self.register_commands().await.is_ok();
                    }
                    backoff = std::time::Duration::from_secs(5);
                    std::time::Duration::from_millis(200)
                }
                Ok(Polled::NotLeader) => std::time::Duration::from_secs(5),
                Ok(Polled::Conflict) => {
                    tracing::error!("Telegram 409: another process polls this bot token; backing off {backoff:?}");
                    let e = NewEvent::new(
                        self.clock.now(),
                        EventKind::ChannelFailed,
                        Severity::Warning,
                        "Telegram refused polling (409): another process uses this bot token",
                    )
                    .dedup("telegram:409");
                    if let Err(err) = self.control.store.append_events(vec![e]).await {
                        tracing::warn!("conflict not recorded: {err}");
                    }
                    let w = backoff;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(300));
                    w
                }
                Err(e) => {
                    tracing::warn!("Telegram poll failed: {}", e.message);
                    e.retry_after.unwrap_or(backoff)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
