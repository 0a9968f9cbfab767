//! The table of every configuration key: its type, its valid range and why it exists. Validation at start-up,
//! the reading of environment overrides and secrets, and the README's key list are all derived from this one
//! table, so the documentation cannot drift from what the bot accepts. Adding a setting is adding a row here
//! (and the field in its section type).

use std::fmt::{self, Write as _};

use mcbot_stages::domain::Decimal;

/// How a key's value is written and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An exact decimal, written as a quoted string (`"0.001"`): floats would round money.
    Decimal,
    /// A whole number.
    Int,
    /// A floating-point number (statistics thresholds, never money).
    Float,
    /// `true` or `false`.
    Bool,
    /// A string.
    Text,
    /// A credential or connection string: always read as the raw string it is written as, never printed.
    Secret,
    /// A list.
    List,
    /// A table (array of tables).
    Table,
    /// An RFC 3339 time (`2026-01-01T00:00:00Z`).
    Time,
    /// A file path.
    Path,
}

impl Kind {
    /// Environment overrides of these kinds are taken as the raw string, whatever they look like: a secret of
    /// digits stays a string, `MCBOT_RISK__STOP_LOSS_PCT=8` is the decimal 8, not an integer to be converted.
    pub fn is_raw_string(self) -> bool {
        matches!(self, Kind::Decimal | Kind::Text | Kind::Secret | Kind::Time | Kind::Path)
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Decimal => "decimal string",
            Kind::Int => "integer",
            Kind::Float => "number",
            Kind::Bool => "boolean",
            Kind::Text => "string",
            Kind::Secret => "secret string",
            Kind::List => "list",
            Kind::Table => "list of tables",
            Kind::Time => "RFC 3339 time",
            Kind::Path => "path",
        }
    }
}

/// One end of a numeric range, as mantissa and scale so the table stays a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// No limit on this side.
    None,
    /// The value may equal it.
    Incl(i64, u32),
    /// The value must stay strictly beyond it.
    Excl(i64, u32),
}

impl Bound {
    fn value(self) -> Option<Decimal> {
        match self {
            Bound::None => None,
            Bound::Incl(m, s) | Bound::Excl(m, s) => Some(Decimal::new(m, s)),
        }
    }
}

/// Integer bounds, inclusive.
const fn n(v: i64) -> Bound {
    Bound::Incl(v, 0)
}

/// What values a key accepts beyond its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Any value of the type (checked by the type itself, or by the component that uses it).
    Any,
    /// A number between two bounds.
    Num(Bound, Bound),
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A six-field cron expression (seconds first), UTC.
    Cron,
    /// A URL with one of these schemes (`http`, `wss`, `sqlite`, ...).
    Url(&'static [&'static str]),
    /// An asset code: 2-10 upper-case letters or digits.
    Asset,
    /// A list with at least one element.
    NonEmpty,
    /// A log filter: a level, or comma-separated `target=level` directives.
    LogFilter,
    /// A socket address to listen on (`127.0.0.1:9184`, `[::1]:9184`), or empty for "off".
    ListenAddr,
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Range::Any => f.write_str("any"),
            Range::Num(lo, hi) => match (lo.value(), hi.value()) {
                (Some(l), Some(h)) => {
                    let open = if matches!(lo, Bound::Excl(..)) { '(' } else { '[' };
                    let close = if matches!(hi, Bound::Excl(..)) { ')' } else { ']' };
                    write!(f, "{open}{l}, {h}{close}")
                }
                (Some(l), None) => write!(f, "{} {l}", if matches!(lo, Bound::Excl(..)) { ">" } else { ">=" }),
                (None, Some(h)) => write!(f, "{} {h}", if matches!(hi, Bound::Excl(..)) { "<" } else { "<=" }),
                (None, None) => f.write_str("any"),
            },
            Range::OneOf(words) => f.write_str(&words.join(" \\| ")),
            Range::Cron => f.write_str("6-field cron, UTC"),
            Range::Url(schemes) => write!(f, "{} URL", schemes.join("/")),
            Range::Asset => f.write_str("2-10 of A-Z, 0-9"),
            Range::NonEmpty => f.write_str("at least one"),
            Range::LogFilter => f.write_str("trace\\|debug\\|info\\|warn\\|error\\|off, or target=level,..."),
            Range::ListenAddr => f.write_str("ip:port, or empty (off)"),
        }
    }
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// Dotted key; a last segment `*` stands for any name (a symbol, a strategy parameter).
    pub key: &'static str,
    /// How the value is written.
    pub kind: Kind,
    /// Valid values.
    pub range: Range,
    /// What it does, for the README and `mcbot config keys`.
    pub doc: &'static str,
}

impl KeySpec {
    /// True for `key` itself, or for a name under a `*` key.
    pub fn matches(&self, key: &str) -> bool {
        match self.key.strip_suffix(".*") {
            Some(prefix) => key
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|name| !name.is_empty() && !name.contains('.')),
            None => self.key == key,
        }
    }

    /// Checks `value` (already of the right type) against the range; the message is the part after
    /// `config key K: `. A secret's value never appears in it.
    pub fn check(&self, value: &toml::Value) -> Result<(), String> {
        let shown = || {
            if self.kind == Kind::Secret {
                "[redacted]".to_owned()
            } else {
                match value {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                }
            }
        };
        let text = value.as_str();
        match self.range {
            Range::Any => Ok(()),
            Range::Num(lo, hi) => {
                let v = match value {
                    toml::Value::String(s) => s.trim().parse::<Decimal>().ok(),
                    toml::Value::Integer(i) => Some(Decimal::from(*i)),
                    toml::Value::Float(x) => Decimal::try_from(*x).ok(),
                    _ => None,
                };
                let Some(v) = v else { return Err(format!("must be a number in {}, got {}", self.range, shown())) };
                let low_ok = match lo {
                    Bound::None => true,
                    Bound::Incl(..) => lo.value().is_none_or(|l| v >= l),
                    Bound::Excl(..) => lo.value().is_none_or(|l| v > l),
                };
                let high_ok = match hi {
                    Bound::None => true,
                    Bound::Incl(..) => hi.value().is_none_or(|h| v <= h),
                    Bound::Excl(..) => hi.value().is_none_or(|h| v < h),
                };
                if low_ok && high_ok {
                    Ok(())
                } else if lo.value().is_some() && hi.value().is_some() {
                    Err(format!("must be in {}, got {}", self.range, shown()))
                } else {
                    Err(format!("must be {}, got {}", self.range, shown()))
                }
            }
            Range::OneOf(words) => match text {
                Some(t) if words.contains(&t) => Ok(()),
                _ => Err(format!("must be one of {}, got {}", words.join(", "), shown())),
            },
            Range::Cron => match text.map(mcbot_schedules::Schedule::parse) {
                Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(format!("{e}")),
                None => Err(format!("must be a cron expression, got {}", shown())),
            },
            Range::Url(schemes) => {
                let ok = text.is_some_and(|t| {
                    schemes
                        .iter()
                        .any(|s| t.starts_with(&format!("{s}://")) || (*s == "sqlite" && t.starts_with("sqlite:")))
                });
                if ok {
                    Ok(())
                } else {
                    let want: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
                    Err(format!("must start with {}, got {}", want.join(" or "), shown()))
                }
            }
            Range::Asset => match text {
                Some(t)
                    if (2..=10).contains(&t.len())
                        && t.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) =>
                {
                    Ok(())
                }
                _ => Err(format!("must be 2-10 upper-case letters or digits, got {}", shown())),
            },
            Range::NonEmpty => match value {
                toml::Value::Array(a) if !a.is_empty() => Ok(()),
                _ => Err("must list at least one".to_owned()),
            },
            Range::LogFilter => match text {
                Some(t) if valid_log_filter(t) => Ok(()),
                _ => Err(format!(
                    "must be a level (trace, debug, info, warn, error, off) or target=level directives, got {}",
                    shown()
                )),
            },
            Range::ListenAddr => match text {
                Some(t) if t.is_empty() || t.parse::<std::net::SocketAddr>().is_ok() => Ok(()),
                _ => Err(format!("must be ip:port (127.0.0.1:9184) or empty to turn it off, got {}", shown())),
            },
        }
    }
}

/// Log levels `log.level` accepts.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// `info`, or `info,mcbot=debug,sqlx=warn`: every directive is a level, or a target with a level. A bare word
/// that is not a level would silently be read as a target name with every level on, so it is refused.
fn valid_log_filter(filter: &str) -> bool {
    !filter.trim().is_empty()
        && filter.split(',').all(|d| {
            let d = d.trim().to_ascii_lowercase();
            match d.split_once('=') {
                Some((target, level)) => {
                    !target.is_empty()
                        && target.bytes().all(|b| b.is_ascii_alphanumeric() || b"_:-".contains(&b))
                        && LEVELS.contains(&level)
                }
                None => LEVELS.contains(&d.as_str()),
            }
        })
}

const PCT: Range = Range::Num(Bound::Excl(0, 0), n(100));
const POSITIVE: Range = Range::Num(Bound::Excl(0, 0), Bound::None);
const NON_NEGATIVE: Range = Range::Num(n(0), Bound::None);
const FRACTION: Range = Range::Num(n(0), Bound::Excl(1, 0));
const MS_TIMEOUT: Range = Range::Num(n(100), n(600_000));
const HTTP: Range = Range::Url(&["http", "https"]);
const SEVERITIES: Range = Range::OneOf(&["info", "warning", "critical", "emergency"]);
const fn key(key: &'static str, kind: Kind, range: Range, doc: &'static str) -> KeySpec {
    KeySpec { key, kind, range, doc }
}

/// Every key, in the order of `config/default.toml`.
pub const KEYS: &[KeySpec] = &[
    key("mode", Kind::Text, Range::OneOf(&["mock", "paper", "shadow", "live"]), "where orders go; `--mode` overrides"),
    key("market.quote", Kind::Text, Range::Asset, "the asset every symbol is priced in; all money amounts are in it"),
    key("market.symbols", Kind::List, Range::NonEmpty, "symbols traded, each once, each against `market.quote`"),
    key(
        "market.timeframe",
        Kind::Text,
        Range::OneOf(&["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d"]),
        "bar length; the trading cycle runs once per bar",
    ),
    key("sim.seed", Kind::Int, NON_NEGATIVE, "seed of the simulated random walk, so a mock run can be repeated"),
    key("sim.start", Kind::Time, Range::Any, "open time of the first simulated bar"),
    key("sim.bar_vol", Kind::Float, Range::Num(n(0), Bound::Excl(1, 0)), "per-bar volatility of the random walk"),
    key("sim.initial_cash", Kind::Decimal, POSITIVE, "starting cash of the simulated account"),
    key("sim.fee_rate", Kind::Decimal, FRACTION, "fee per side as a fraction of notional (0.001 = 0.1 %)"),
    key("sim.slippage_bps", Kind::Decimal, Range::Num(n(0), n(1_000)), "simulated slippage in basis points"),
    key("sim.tick_size", Kind::Decimal, POSITIVE, "price increment of every simulated symbol"),
    key("sim.step_size", Kind::Decimal, POSITIVE, "quantity increment of every simulated symbol"),
    key("sim.min_notional", Kind::Decimal, NON_NEGATIVE, "smallest order value the simulator accepts"),
    key("sim.replay.*", Kind::Path, Range::Any, "candle CSV replayed for that symbol instead of the random walk"),
    key("sim.start_prices.*", Kind::Decimal, POSITIVE, "first price of that symbol's random walk"),
    key("exchange.venue", Kind::Text, Range::OneOf(&["binance", "upbit"]), "the real venue of paper, shadow and live"),
    key("exchange.paper_cash", Kind::Decimal, POSITIVE, "starting cash of the paper account, in the quote asset"),
    key("exchange.paper_fee_rate", Kind::Decimal, FRACTION, "fee per side the paper fill engine charges"),
    key("exchange.binance.rest_url", Kind::Text, HTTP, "Binance REST base URL (tests and the testnet point elsewhere)"),
    key("exchange.binance.ws_url", Kind::Text, Range::Url(&["ws", "wss"]), "Binance WebSocket base URL"),
    key("exchange.binance.api_key", Kind::Secret, Range::Any, "API key for signed endpoints; from env or `_FILE` only"),
    key("exchange.binance.api_secret", Kind::Secret, Range::Any, "HMAC secret; from env or `_FILE` only"),
    key("exchange.binance.recv_window_ms", Kind::Int, Range::Num(n(1), n(60_000)), "validity of a signed request"),
    key(
        "exchange.binance.weight_budget_per_min",
        Kind::Int,
        Range::Num(n(1), n(6_000)),
        "request weight allowed per minute; Binance's IP limit is 6000",
    ),
    key(
        "exchange.binance.max_limit_wait_ms",
        Kind::Int,
        Range::Num(n(0), n(600_000)),
        "longest wait for the weight budget before a retryable error",
    ),
    key("exchange.binance.request_timeout_ms", Kind::Int, MS_TIMEOUT, "whole-request time-out"),
    key("exchange.binance.connect_timeout_ms", Kind::Int, MS_TIMEOUT, "connect time-out"),
    key(
        "exchange.binance.lookup_before_place",
        Kind::Bool,
        Range::Any,
        "look a client order id up before sending it, so a restart never places it twice",
    ),
    key("exchange.binance.order_submit_attempts", Kind::Int, Range::Num(n(1), n(10)), "submissions of one order"),
    key(
        "exchange.binance.order_lookup_attempts",
        Kind::Int,
        Range::Num(n(1), n(20)),
        "lookups after an unknown outcome",
    ),
    key("exchange.binance.order_lookup_delay_ms", Kind::Int, Range::Num(n(0), n(60_000)), "pause between lookups"),
    key(
        "exchange.binance.stream.aggregate_from_1m",
        Kind::Bool,
        Range::Any,
        "build bars from 1m klines instead of subscribing to the timeframe",
    ),
    key("exchange.binance.stream.warmup_bars", Kind::Int, Range::Num(n(0), n(1_000)), "bars loaded over REST at start"),
    key("exchange.binance.stream.cache_bars", Kind::Int, Range::Num(n(1), n(100_000)), "bars kept per symbol"),
    key("exchange.binance.stream.ping_interval_ms", Kind::Int, Range::Num(n(1_000), n(600_000)), "ping interval"),
    key("exchange.binance.stream.idle_timeout_ms", Kind::Int, Range::Num(n(1_000), n(3_600_000)), "silence = dead"),
    key("exchange.binance.stream.reconnect_base_ms", Kind::Int, Range::Num(n(1), n(600_000)), "first reconnect delay"),
    key("exchange.binance.stream.reconnect_max_ms", Kind::Int, Range::Num(n(1), n(3_600_000)), "reconnect delay cap"),
    key(
        "exchange.binance.stream.max_connection_age_secs",
        Kind::Int,
        Range::Num(n(60), n(86_399)),
        "reconnect before Binance's 24 h cut",
    ),
    key("exchange.binance.stream.jitter_seed", Kind::Int, NON_NEGATIVE, "fixed reconnect jitter (tests)"),
    key("exchange.upbit.rest_url", Kind::Text, HTTP, "Upbit REST base URL"),
    key("exchange.upbit.access_key", Kind::Secret, Range::Any, "Upbit access key; from env or `_FILE` only"),
    key("exchange.upbit.secret_key", Kind::Secret, Range::Any, "Upbit secret key; from env or `_FILE` only"),
    key("exchange.upbit.request_timeout_ms", Kind::Int, MS_TIMEOUT, "time-out of one request"),
    key("exchange.upbit.quote", Kind::Text, Range::Asset, "quote currency of Upbit's markets"),
    key("exchange.upbit.min_order_total", Kind::Decimal, NON_NEGATIVE, "smallest order total Upbit accepts"),
    key("exchange.upbit.volume_step", Kind::Decimal, POSITIVE, "volume increment"),
    key("exchange.upbit.tick_table", Kind::Table, Range::Any, "price-unit bands `{ from, tick }`, ascending"),
    key("exchange.upbit.lookup_attempts", Kind::Int, Range::Num(n(1), n(20)), "lookups of an unknown order"),
    key("exchange.upbit.fill_polls", Kind::Int, Range::Num(n(0), n(100)), "polls for fills after an order"),
    key("exchange.upbit.fill_poll_interval_ms", Kind::Int, Range::Num(n(0), n(60_000)), "pause between polls"),
    key("exchange.upbit.ban_secs", Kind::Int, Range::Num(n(1), n(86_400)), "pause after a 418 without Retry-After"),
    key("exchange.upbit.rate_limit_backoff_ms", Kind::Int, Range::Num(n(0), n(600_000)), "wait after a 429"),
    key("strategy.name", Kind::Text, Range::Any, "strategy, e.g. `tsmom`, `sma-cross`"),
    key("strategy.params.*", Kind::Text, Range::Any, "a strategy parameter; the strategy checks it at start"),
    key("strategy.gate.enabled", Kind::Bool, Range::Any, "require a recent-window backtest to pass before entries"),
    key("strategy.gate.window_bars", Kind::Int, Range::Num(n(10), n(100_000)), "bars of that backtest"),
    key("strategy.gate.min_return_pct", Kind::Float, Range::Num(n(-100), Bound::None), "minimum return over it, %"),
    key("strategy.gate.min_win_rate_pct", Kind::Float, Range::Num(n(0), n(100)), "minimum share of winning trades, %"),
    key("strategy.gate.min_profit_factor", Kind::Float, NON_NEGATIVE, "minimum gross profit / gross loss"),
    key("strategy.gate.min_sharpe", Kind::Float, Range::Any, "minimum annualised Sharpe ratio"),
    key("strategy.gate.max_drawdown_pct", Kind::Float, Range::Num(Bound::Excl(0, 0), n(100)), "maximum drawdown, %"),
    key("risk.max_daily_loss_pct", Kind::Decimal, PCT, "loss since the UTC day's start that blocks entries"),
    key("risk.max_weekly_loss_pct", Kind::Decimal, PCT, "loss since Monday 00:00 UTC that blocks entries"),
    key("risk.max_drawdown_pct", Kind::Decimal, PCT, "drawdown from peak that latches safe mode"),
    key("risk.stop_loss_pct", Kind::Decimal, PCT, "loss from entry that closes a position; unset disables"),
    key("risk.take_profit_pct", Kind::Decimal, Range::Num(Bound::Excl(0, 0), n(10_000)), "gain that closes a position"),
    key("risk.kill_switch_file", Kind::Path, Range::Any, "while this file exists, no entries (exits allowed)"),
    key("risk.max_order_equity_pct", Kind::Decimal, PCT, "largest single buy as % of equity; larger ones are refused"),
    key(
        "risk.min_entry_interval_secs",
        Kind::Int,
        Range::Num(n(0), n(2_592_000)),
        "least time between two entries in one symbol; 0 = no limit",
    ),
    key("risk.max_entries_per_day", Kind::Int, Range::Num(n(0), n(10_000)), "most entries per UTC day; 0 = no limit"),
    key(
        "risk.max_api_failures",
        Kind::Int,
        Range::Num(n(0), n(1_000)),
        "consecutive failed exchange calls (mode live) that stop entries until a clean reconcile; 0 = off",
    ),
    key(
        "risk.max_stream_down_secs",
        Kind::Int,
        Range::Num(n(0), n(86_400)),
        "market stream down this long (mode live) stops entries until it is back; 0 = off",
    ),
    key("pretrade.max_order_notional", Kind::Decimal, POSITIVE, "largest buy, in the quote asset; larger ones shrink"),
    key("pretrade.max_open_positions", Kind::Int, Range::Num(n(1), n(1_000)), "most symbols held at once"),
    key("pretrade.allow_list", Kind::List, Range::Any, "symbols that may be bought; empty = `market.symbols`"),
    key("sizing.rebalance_band_pct", Kind::Decimal, Range::Num(n(0), Bound::Excl(100, 0)), "drift not worth a trade"),
    key("sizing.cash_buffer_pct", Kind::Decimal, Range::Num(n(0), Bound::Excl(100, 0)), "cash kept back from buys"),
    key("sizing.max_slippage_pct", Kind::Decimal, Range::Num(Bound::Excl(0, 0), n(10)), "largest book slippage"),
    key("pipeline.lookback_bars", Kind::Int, Range::Num(n(2), n(100_000)), "bars fetched per symbol"),
    key("pipeline.stage_timeout_secs", Kind::Int, Range::Num(n(5), n(3_600)), "time limit of one stage"),
    key("pipeline.max_stale_bars", Kind::Int, Range::Num(n(0), n(1_000)), "bars the data may lag before it is stale"),
    key("pipeline.retry_attempts", Kind::Int, Range::Num(n(1), n(10)), "attempts of a cycle that failed transiently"),
    key("pipeline.retry_delay_ms", Kind::Int, Range::Num(n(0), n(600_000)), "first retry delay, doubled each time"),
    key("schedule.bar_delay_secs", Kind::Int, Range::Num(n(0), n(3_599)), "delay after a bar close before the cycle"),
    key("schedule.trigger_on_stream", Kind::Bool, Range::Any, "start the cycle when the stream has every bar"),
    key("schedule.grace_secs", Kind::Int, Range::Num(n(0), n(86_400)), "a missed fire older than this is skipped"),
    key("schedule.stale_run_secs", Kind::Int, Range::Num(n(60), n(86_400)), "a running run older than this is dead"),
    key(
        "schedule.unplaced_order_secs",
        Kind::Int,
        Range::Num(n(10), n(86_400)),
        "unknown pending order = never placed",
    ),
    key(
        "schedule.shutdown_grace_secs",
        Kind::Int,
        Range::Num(n(1), n(600)),
        "after SIGTERM, time a running job gets to commit",
    ),
    key("schedule.health", Kind::Text, Range::Cron, "health check"),
    key("schedule.reconcile", Kind::Text, Range::Cron, "reconciliation with the exchange"),
    key("schedule.report_daily", Kind::Text, Range::Cron, "daily report"),
    key("schedule.report_weekly", Kind::Text, Range::Cron, "weekly report"),
    key("schedule.report_monthly", Kind::Text, Range::Cron, "monthly report"),
    key(
        "database.url",
        Kind::Secret,
        Range::Url(&["sqlite", "postgres", "postgresql"]),
        "database; unset = SQLite under `data_dir`; `DATABASE_URL` overrides",
    ),
    key("database.data_dir", Kind::Path, Range::Any, "where the SQLite file and the kill switch live"),
    key(
        "reconcile.drift_tolerance_pct",
        Kind::Decimal,
        Range::Num(Bound::Excl(0, 0), n(50)),
        "position drift (% of it) corrected; more = safe mode",
    ),
    key(
        "reconcile.unmanaged_holdings",
        Kind::Text,
        Range::OneOf(&["ignore", "adopt"]),
        "holdings found at the first reconcile: ignore or adopt",
    ),
    key("events.retention_days", Kind::Int, Range::Num(n(1), n(36_500)), "events older than this are pruned"),
    key(
        "notify.alert_min_severity",
        Kind::Text,
        SEVERITIES,
        "events at or above this go to the alert route (lifecycle always does)",
    ),
    key(
        "notify.routes.*",
        Kind::Text,
        Range::OneOf(&["trades", "alerts", "reports", "none"]),
        "route of that event kind, over the defaults (fills: trades, reports: reports)",
    ),
    key(
        "notify.cooldown_secs",
        Kind::Int,
        Range::Num(n(0), n(86_400)),
        "the same condition again within this time is suppressed and counted",
    ),
    key("notify.retry_base_ms", Kind::Int, Range::Num(n(100), n(600_000)), "first retry delay, doubled each time"),
    key("notify.retry_max_secs", Kind::Int, Range::Num(n(1), n(86_400)), "longest retry delay"),
    key("notify.max_attempts", Kind::Int, Range::Num(n(1), n(1000)), "attempts before a delivery goes to the fallback"),
    key(
        "notify.fallback",
        Kind::Text,
        Range::OneOf(&["log", "telegram", "discord", "email", "none"]),
        "channel of what another channel gave up on",
    ),
    key(
        "notify.flush_timeout_secs",
        Kind::Int,
        Range::Num(n(0), n(600)),
        "`run-once` waits this long for its messages; the rest stays pending",
    ),
    key("notify.request_timeout_ms", Kind::Int, MS_TIMEOUT, "time-out of one channel request"),
    key(
        "notify.group_window_secs",
        Kind::Int,
        Range::Num(n(0), n(3600)),
        "similar alerts waiting together within this time are one message; 0 = off",
    ),
    key(
        "notify.repeat_emergency_secs",
        Kind::Int,
        Range::Num(n(30), n(86_400)),
        "an emergency is sent again this often until acknowledged",
    ),
    key(
        "notify.escalate_after_secs",
        Kind::Int,
        Range::Num(n(60), n(604_800)),
        "a warning still active after this time is sent again as critical",
    ),
    key(
        "notify.retention_days",
        Kind::Int,
        Range::Num(n(1), n(36_500)),
        "sent and suppressed deliveries older than this are pruned",
    ),
    key("notify.telegram.token", Kind::Secret, Range::Any, "bot token; from env or `_FILE`"),
    key("notify.telegram.chat_ids", Kind::List, Range::NonEmpty, "chats that receive messages and may command the bot"),
    key("notify.telegram.api_url", Kind::Text, HTTP, "Bot API base URL (tests point it at a fake)"),
    key("notify.discord.webhooks.trades", Kind::Secret, HTTP, "webhook URL for fills; unset = the alerts one"),
    key("notify.discord.webhooks.alerts", Kind::Secret, HTTP, "webhook URL for alerts (and fallback)"),
    key("notify.discord.webhooks.reports", Kind::Secret, HTTP, "webhook URL for reports; unset = the alerts one"),
    key(
        "notify.discord.critical_role_id",
        Kind::Text,
        Range::Any,
        "role mentioned by critical messages; unset = nobody",
    ),
    key("notify.email.smtp_url", Kind::Secret, Range::Url(&["smtp", "smtps"]), "SMTP server; may carry user:password"),
    key(
        "notify.email.tls",
        Kind::Text,
        Range::OneOf(&["opportunistic", "required"]),
        "STARTTLS on `smtp://`: when offered, or insist",
    ),
    key("notify.email.user", Kind::Text, Range::Any, "SMTP login when not in the URL"),
    key("notify.email.password", Kind::Secret, Range::Any, "SMTP password; from env or `_FILE`"),
    key("notify.email.from", Kind::Text, Range::Any, "sender address"),
    key("notify.email.to", Kind::List, Range::NonEmpty, "recipients"),
    key("notify.email.alert_min_severity", Kind::Text, SEVERITIES, "alerts at or above this are mailed too"),
    key(
        "notify.email.ca_file",
        Kind::Path,
        Range::Any,
        "PEM certificates trusted for the SMTP server besides the public roots (a private relay's CA)",
    ),
    key("log.format", Kind::Text, Range::OneOf(&["pretty", "json"]), "log line format"),
    key("log.level", Kind::Text, Range::LogFilter, "log filter; `RUST_LOG` overrides"),
    key(
        "http.listen",
        Kind::Text,
        Range::ListenAddr,
        "admin HTTP server (`/metrics`, `/healthz`, `/readyz`) of the scheduler; empty turns it off",
    ),
    key(
        "http.api_token",
        Kind::Secret,
        Range::Any,
        "bearer token of the control API `/api/v1/*`; from env or `_FILE` only; unset = control API refuses all",
    ),
    key(
        "sentry.dsn",
        Kind::Secret,
        Range::Any,
        "Sentry project DSN (checked at start); unset = error tracking off; `SENTRY_DSN(_FILE)` also sets it",
    ),
    key("sentry.environment", Kind::Text, Range::Any, "Sentry environment; unset = the mode"),
    key("sentry.shutdown_timeout_ms", Kind::Int, Range::Num(n(100), n(60_000)), "longest wait to flush events at exit"),
    key(
        "monitor.rss_limit_bytes",
        Kind::Int,
        Range::Num(n(1_048_576), Bound::None),
        "resident memory the process should stay under; exported for the memory alert; above it the health job warns",
    ),
    key(
        "monitor.runtime_lag_secs",
        Kind::Float,
        Range::Num(Bound::Excl(0, 0), n(3600)),
        "async runtime wake-up delay that warns",
    ),
    key("monitor.open_fds_limit", Kind::Int, Range::Num(n(16), n(1_048_576)), "open file descriptors that warn"),
    key(
        "monitor.execution.slippage_p95_bps",
        Kind::Float,
        Range::Num(Bound::Excl(0, 0), n(10_000)),
        "p95 adverse slippage of the last hour that warns, bps",
    ),
    key(
        "monitor.execution.slippage_max_bps",
        Kind::Float,
        Range::Num(Bound::Excl(0, 0), n(10_000)),
        "a single fill's adverse slippage that is critical, bps",
    ),
    key(
        "monitor.execution.latency_p95_secs",
        Kind::Float,
        Range::Num(Bound::Excl(0, 0), n(3600)),
        "p95 order-to-fill latency of the last hour that warns, s",
    ),
    key(
        "monitor.execution.latency_max_secs",
        Kind::Float,
        Range::Num(Bound::Excl(0, 0), n(3600)),
        "a single fill's latency that is critical, s",
    ),
    key(
        "monitor.execution.fees_per_hour_pct",
        Kind::Float,
        Range::Num(Bound::Excl(0, 0), n(100)),
        "fees of the last hour, % of equity, that warn",
    ),
    key(
        "monitor.returns.min_days",
        Kind::Int,
        Range::Num(n(5), n(3650)),
        "days of live returns before the return monitors speak",
    ),
    key(
        "monitor.returns.drawdown_confidence",
        Kind::Float,
        Range::Num(Bound::Excl(5, 1), Bound::Excl(1, 0)),
        "confidence of the GBM drawdown depth and duration bounds",
    ),
    key(
        "monitor.returns.drift_delta_sd",
        Kind::Float,
        Range::Num(n(0), n(10)),
        "Page-Hinkley tolerance, in sd of backtest daily returns",
    ),
    key(
        "monitor.returns.drift_threshold_sd",
        Kind::Float,
        Range::Num(Bound::Excl(0, 0), n(1000)),
        "Page-Hinkley threshold, in sd of backtest daily returns",
    ),
    key(
        "monitor.returns.ks_window_days",
        Kind::Int,
        Range::Num(n(5), n(3650)),
        "recent live days compared with the backtest (KS test)",
    ),
    key(
        "monitor.returns.ks_p_value",
        Kind::Float,
        Range::Num(Bound::Excl(0, 0), Bound::Incl(5, 1)),
        "KS p-value below which the distributions differ",
    ),
    key("live.confirmation_file", Kind::Path, Range::Any, "owner's confirmation naming venue and account"),
    key("live.account", Kind::Text, Range::Any, "the account traded, as the confirmation file names it"),
    key("live.key_cannot_withdraw", Kind::Bool, Range::Any, "owner's word that the key cannot withdraw (Upbit)"),
    key("live.allow_withdrawal_key", Kind::Bool, Range::Any, "accept an API key that can withdraw (not advised)"),
    key("live.dry_run_cycles", Kind::Int, Range::Num(n(0), n(1_000)), "cycles after each start that send nothing"),
    key("live.max_clock_offset_ms", Kind::Int, Range::Num(n(1), n(1_000)), "largest clock offset from the venue"),
    key("live.capital_fraction", Kind::Decimal, Range::Num(Bound::Excl(0, 0), n(1)), "share of equity traded"),
    key("live.max_order_notional", Kind::Decimal, POSITIVE, "largest buy in mode live, in the quote asset"),
    key(
        "live.max_trades_per_day",
        Kind::Int,
        Range::Num(n(0), n(10_000)),
        "orders per UTC day in mode live; 0 = no limit",
    ),
];

/// Maps whose names are symbols: an environment override keeps the name's case
/// (`MCBOT_SIM__START_PRICES__BTCUSDT`), where every other name is lower-cased.
pub const SYMBOL_MAPS: [&str; 2] = ["sim.replay.*", "sim.start_prices.*"];

/// The row for `key` (a `*` row for names under a map).
pub fn spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|s| s.matches(key))
}

/// True when `key` holds a credential.
pub fn is_secret(key: &str) -> bool {
    spec(key).is_some_and(|s| s.kind == Kind::Secret)
}

/// The last path segments of secret keys (`api_secret`, `url` under `database`, ...), for scrubbing parser
/// messages that quote a source line.
pub fn secret_leaf_names() -> impl Iterator<Item = &'static str> {
    KEYS.iter().filter(|s| s.kind == Kind::Secret).filter_map(|s| s.key.rsplit('.').next())
}

/// The Markdown key list of the README: one row per key with type, range, default and purpose. `defaults`
/// is the shipped configuration (built-in defaults with `config/default.toml` over them).
pub fn reference_markdown(defaults: &toml::Value, rules: &[(&str, &str)]) -> String {
    let mut out = String::from("| key | type | valid | default | what |\n|---|---|---|---|---|\n");
    for s in KEYS {
        let default = match lookup(defaults, s.key) {
            _ if s.kind == Kind::Secret => "unset".to_owned(),
            Some(v) => render(v),
            None => match s.key.strip_suffix(".*").and_then(|parent| lookup(defaults, parent)) {
                Some(v) => render(v),
                None => "unset".to_owned(),
            },
        };
        let _ = writeln!(out, "| `{}` | {} | {} | {} | {} |", s.key, s.kind.name(), s.range, default, s.doc);
    }
    out.push_str("\nRules across keys:\n\n");
    for (key, rule) in rules {
        let _ = writeln!(out, "- `{key}`: {rule}");
    }
    out
}

fn render(v: &toml::Value) -> String {
    let text = match v {
        toml::Value::String(s) => format!("\"{s}\""),
        toml::Value::Table(t) if t.is_empty() => "none".to_owned(),
        toml::Value::Array(a) if a.len() > 4 => format!("{} entries", a.len()),
        toml::Value::Table(t) if t.len() == 1 => "1 entry".to_owned(),
        toml::Value::Table(t) => format!("{} entries", t.len()),
        other => other.to_string(),
    };
    format!("`{}`", text.replace('|', "\\|"))
}

/// The value at a dotted key.
pub fn lookup<'a>(root: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    key.split('.').try_fold(root, |node, part| node.get(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_as_intervals() {
        assert_eq!(PCT.to_string(), "(0, 100]");
        assert_eq!(POSITIVE.to_string(), "> 0");
        assert_eq!(Range::Num(n(0), Bound::Excl(1, 0)).to_string(), "[0, 1)");
        let s = spec("risk.stop_loss_pct").unwrap();
        assert_eq!(s.check(&toml::Value::String("-8".into())).unwrap_err(), "must be in (0, 100], got -8");
        assert!(s.check(&toml::Value::String("100".into())).is_ok());
        assert!(s.check(&toml::Value::String("0".into())).is_err());
    }

    #[test]
    fn log_filters() {
        for ok in ["info", "WARN", "info,mcbot=debug", "mcbot_stages=trace,sqlx=off"] {
            assert!(valid_log_filter(ok), "{ok}");
        }
        for bad in ["", "verbose", "info,", "mcbot=loud", "=info"] {
            assert!(!valid_log_filter(bad), "{bad}");
        }
    }

    #[test]
    fn wildcard_rows_match_one_name() {
        assert!(is_secret("exchange.binance.api_secret"));
        assert!(spec("sim.start_prices.BTCUSDT").is_some());
        assert!(spec("sim.start_prices").is_none());
        assert!(spec("sim.start_prices.a.b").is_none());
        assert_eq!(secret_leaf_names().filter(|n| *n == "url").count(), 1);
    }
}
