//! Configuration: `config/default.toml`, then the profile named after the mode (or `--profile`), then
//! `MCBOT_SECTION__KEY` environment overrides. Every layer is checked on its own, so an unknown or mistyped key
//! is reported with the file, line and key at start-up, never at the first trade.

mod env;
pub mod keys;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use mcbot_stages::domain::{Decimal, Symbol, Timeframe};
use mcbot_stages::pipeline::execution::SizingParams;
use mcbot_stages::pipeline::gate::QuickFilter;
use mcbot_stages::pipeline::pretrade::PreTradeLimits;
use mcbot_stages::pipeline::risk::RiskLimits;
use serde::{Deserialize, Serialize};

use self::keys::Kind;
use env::apply_env;
pub use env::secret_from_env;

/// A configuration problem; always exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read config file {path}: {source}{hint}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
        /// How to point at the right directory, when the file is missing.
        hint: &'static str,
    },
    /// A file is not valid TOML or has an unknown or mistyped key (the message names line and key).
    #[error("config file {path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Parser message with line, column and key.
        message: String,
    },
    /// An environment override is wrong.
    #[error("environment variable {var}: {message}")]
    Env {
        /// Variable name.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// A value parsed but is outside its range, or contradicts another key.
    #[error("config key {key}: {message}{origin}")]
    Invalid {
        /// Dotted key.
        key: String,
        /// What is wrong.
        message: String,
        /// Where the value was set (` (config/paper.toml, line 5)`), or empty when it is a built-in default.
        origin: String,
    },
}

impl ConfigError {
    /// Replaces every secret value in the message with `[redacted]`: a last line of defence, so that no message
    /// (whatever produced it) shows a credential. Values shorter than 4 characters are left, since replacing
    /// them would garble ordinary words and numbers of the message.
    fn redacted(self, secrets: &[String]) -> Self {
        let scrub = |mut text: String| {
            for s in secrets.iter().filter(|s| s.len() >= 4) {
                text = text.replace(s.as_str(), "[redacted]");
            }
            text
        };
        match self {
            ConfigError::Read { path, source, hint } => {
                let message = scrub(source.to_string());
                ConfigError::Read { path, source: std::io::Error::new(source.kind(), message), hint }
            }
            ConfigError::Parse { path, message } => ConfigError::Parse { path, message: scrub(message) },
            ConfigError::Env { var, message } => ConfigError::Env { var, message: scrub(message) },
            ConfigError::Invalid { key, message, origin } => {
                ConfigError::Invalid { key, message: scrub(message), origin }
            }
        }
    }
}

/// Where each key got its value, for messages: `config/paper.toml, line 5` or `environment variable MCBOT_X`.
pub(crate) type Origins = BTreeMap<String, String>;

fn origin_of(origins: &Origins, key: &str) -> String {
    origins.get(key).map(|o| format!(" ({o})")).unwrap_or_default()
}

/// Where the bot trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Embedded simulated exchange.
    #[default]
    Mock,
    /// Real market data, simulated fills.
    Paper,
    /// Signals only.
    Shadow,
    /// Real orders.
    Live,
}

impl Mode {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Mock => "mock",
            Mode::Paper => "paper",
            Mode::Shadow => "shadow",
            Mode::Live => "live",
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Trading mode.
    pub mode: Mode,
    /// What is traded.
    pub market: MarketConfig,
    /// The simulated exchange (mode mock).
    pub sim: SimSettings,
    /// The real venue (modes paper, shadow, live).
    pub exchange: ExchangeConfig,
    /// Strategy and its parameters.
    pub strategy: StrategyConfig,
    /// Risk limits checked by RiskCheck.
    pub risk: RiskLimits,
    /// Limits checked on every order.
    pub pretrade: PreTradeLimits,
    /// Sizing.
    pub sizing: SizingParams,
    /// Pipeline settings.
    pub pipeline: PipelineSettings,
    /// Job schedules.
    pub schedule: ScheduleConfig,
    /// Storage.
    pub database: DatabaseConfig,
    /// Reconciliation with the exchange.
    pub reconcile: ReconcileConfig,
    /// The event log.
    pub events: EventsConfig,
    /// Notifications: routing, fatigue, retries and the channels.
    pub notify: NotifyConfig,
    /// Logging.
    pub log: LogConfig,
    /// The admin HTTP server (metrics and health probes).
    pub http: HttpConfig,
    /// Error tracking and job monitors.
    pub sentry: SentryConfig,
    /// Process limits the health alerts compare against.
    pub monitor: MonitorConfig,
    /// Mode live: its guards and the canary.
    pub live: LiveConfig,
}

/// Mode live: what must be true before real orders go out, and how small the first phase trades. A guard that
/// fails never stops the bot: it trades paper and says why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// The owner's confirmation; its content names the venue and the account (`venue = "binance"`,
    /// `account = "..."`), so a file copied from another deployment does not count.
    pub confirmation_file: PathBuf,
    /// The account this deployment trades, as the confirmation file must name it.
    pub account: String,
    /// The owner's word that the API key cannot withdraw, for venues whose API does not show it (Upbit).
    pub key_cannot_withdraw: bool,
    /// Accept a key that can withdraw (refused unless this is set).
    pub allow_withdrawal_key: bool,
    /// Trading cycles after every start that simulate their orders on the live book and send nothing.
    pub dry_run_cycles: u32,
    /// Largest clock offset from the venue's.
    pub max_clock_offset_ms: i64,
    /// Share of equity the bot trades (the canary): 0.1 sizes every target on a tenth of equity.
    pub capital_fraction: Decimal,
    /// Largest single buy in mode live, in the quote asset, over `pretrade.max_order_notional`.
    pub max_order_notional: Decimal,
    /// Most orders per UTC day in mode live; entries stop for the day once reached (exits still go).
    pub max_trades_per_day: u32,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            confirmation_file: PathBuf::from("data/LIVE_OK"),
            account: String::new(),
            key_cannot_withdraw: false,
            allow_withdrawal_key: false,
            dry_run_cycles: 3,
            max_clock_offset_ms: 1000,
            capital_fraction: Decimal::new(1, 1),
            max_order_notional: Decimal::from(1000),
            max_trades_per_day: 10,
        }
    }
}

/// The admin HTTP server of the scheduler: `/metrics` for Prometheus, `/healthz` and `/readyz` for the
/// orchestrator. It listens on loopback by default, so nothing is exposed unless the operator says so.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `ip:port` to listen on; empty turns the server off.
    pub listen: String,
    /// Bearer token of the control API (`/api/v1/...`); without one, every control call is refused.
    pub api_token: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9184".into(), api_token: None }
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("api_token", &self.api_token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Error tracking (Sentry). Off unless a DSN is given here, in `MCBOT_SENTRY__DSN(_FILE)` or in `SENTRY_DSN(_FILE)`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SentryConfig {
    /// The project DSN (a secret: it lets anyone send events to the project).
    pub dsn: Option<String>,
    /// Environment name in Sentry; the mode when unset.
    pub environment: Option<String>,
    /// Longest wait for queued events at exit.
    pub shutdown_timeout_ms: u64,
}

impl Default for SentryConfig {
    fn default() -> Self {
        Self { dsn: None, environment: None, shutdown_timeout_ms: 2000 }
    }
}

impl std::fmt::Debug for SentryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentryConfig")
            .field("dsn", &self.dsn.as_ref().map(|_| "[redacted]"))
            .field("environment", &self.environment)
            .field("shutdown_timeout_ms", &self.shutdown_timeout_ms)
            .finish()
    }
}

/// The health job's monitors: limits of the process itself (the memory limit is also exported as a metric, so
/// the alert rules compare against the configured value), of execution quality, and of live returns against the
/// strategy's backtest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Resident memory the scheduler should stay under.
    pub rss_limit_bytes: u64,
    /// Delay of a freshly spawned task, in seconds, beyond which the runtime is starved.
    pub runtime_lag_secs: f64,
    /// Open file descriptors beyond which something leaks.
    pub open_fds_limit: u64,
    /// Slippage, fill latency and fee limits of the health job's execution monitor.
    pub execution: mcbot_stages::monitors::execution::ExecutionLimits,
    /// Drawdown, drift and distribution limits of the health job's return monitors.
    pub returns: mcbot_stages::monitors::returns::ReturnLimits,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        let process = mcbot_stages::monitors::process::ProcessLimits::default();
        Self {
            rss_limit_bytes: process.rss_bytes,
            runtime_lag_secs: process.runtime_lag_secs,
            open_fds_limit: process.open_fds,
            execution: Default::default(),
            returns: Default::default(),
        }
    }
}

impl MonitorConfig {
    /// The process monitor's limits.
    pub fn process(&self) -> mcbot_stages::monitors::process::ProcessLimits {
        mcbot_stages::monitors::process::ProcessLimits {
            runtime_lag_secs: self.runtime_lag_secs,
            rss_bytes: self.rss_limit_bytes,
            open_fds: self.open_fds_limit,
        }
    }
}

/// Notifications: which events reach people, through which channels, how repeats are held back and how failed
/// deliveries are retried. A channel whose section is absent is off; the log always carries alerts and reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Events at or above this severity go to the alert route.
    pub alert_min_severity: mcbot_stages::ports::Severity,
    /// Per event kind: `trades`, `alerts`, `reports` or `none`, over the defaults.
    pub routes: BTreeMap<String, String>,
    /// The same condition again within this many seconds of its last message is suppressed and counted.
    pub cooldown_secs: u64,
    /// First retry delay of a failed delivery, doubled each time.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_secs: u64,
    /// Attempts before a delivery is given up and handed to `fallback`.
    pub max_attempts: u32,
    /// The channel that gets what another channel gave up on: `log`, `telegram`, `discord`, `email` or `none`.
    pub fallback: String,
    /// How long `mcbot run-once` waits for its cycle's messages to go out before it exits.
    pub flush_timeout_secs: u64,
    /// Whole-request time-out of a channel call.
    pub request_timeout_ms: u64,
    /// Similar alerts (same kind and severity) waiting together within this many seconds go out as one message;
    /// 0 turns grouping off.
    pub group_window_secs: u64,
    /// An unacknowledged emergency is sent again this often.
    pub repeat_emergency_secs: u64,
    /// A warning whose condition is still active after this many seconds is sent again as critical.
    pub escalate_after_secs: u64,
    /// Sent and suppressed deliveries older than this are pruned by the health job.
    pub retention_days: u32,
    /// Telegram.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telegram: Option<TelegramConfig>,
    /// Discord webhooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discord: Option<DiscordConfig>,
    /// Email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            alert_min_severity: mcbot_stages::ports::Severity::Warning,
            routes: BTreeMap::new(),
            cooldown_secs: 600,
            retry_base_ms: 1000,
            retry_max_secs: 300,
            max_attempts: 20,
            fallback: "log".into(),
            flush_timeout_secs: 10,
            request_timeout_ms: 10_000,
            group_window_secs: 60,
            repeat_emergency_secs: 300,
            escalate_after_secs: 1800,
            retention_days: 30,
            telegram: None,
            discord: None,
            email: None,
        }
    }
}

/// `[notify.telegram]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramConfig {
    /// Bot token (secret: env `MCBOT_NOTIFY__TELEGRAM__TOKEN` or `..._FILE`).
    pub token: Option<String>,
    /// Chats that receive messages and may command the bot.
    pub chat_ids: Vec<i64>,
    /// Bot API base URL.
    pub api_url: String,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        Self { token: None, chat_ids: Vec::new(), api_url: "https://api.telegram.org".into() }
    }
}

impl std::fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramConfig").field("chat_ids", &self.chat_ids).field("api_url", &self.api_url).finish()
    }
}

/// `[notify.discord]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscordConfig {
    /// One webhook per route; a missing route falls back to `alerts`.
    pub webhooks: DiscordWebhooks,
    /// A role mentioned by critical and emergency messages (nobody is pinged otherwise).
    pub critical_role_id: Option<String>,
}

/// `[notify.discord.webhooks]`: the URLs carry the webhook's token, so they are secrets.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscordWebhooks {
    /// Fills and closed trades.
    pub trades: Option<String>,
    /// Warnings and worse, lifecycle; the fallback of the others.
    pub alerts: Option<String>,
    /// Period reports.
    pub reports: Option<String>,
}

impl std::fmt::Debug for DiscordWebhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "[redacted]" } else { "unset" };
        f.debug_struct("DiscordWebhooks")
            .field("trades", &set(&self.trades))
            .field("alerts", &set(&self.alerts))
            .field("reports", &set(&self.reports))
            .finish()
    }
}

/// `[notify.email]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtp://host:port` (STARTTLS when offered) or `smtps://host:port` (secret: it may carry a password).
    pub smtp_url: Option<String>,
    /// `opportunistic` or `required` (STARTTLS for `smtp://`).
    pub tls: String,
    /// SMTP login, when not in the URL.
    pub user: Option<String>,
    /// SMTP password (secret).
    pub password: Option<String>,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Alerts at or above this severity are mailed too (reports always are).
    pub alert_min_severity: mcbot_stages::ports::Severity,
    /// PEM file of the certificates that sign the server's TLS certificate, trusted besides the public roots: a
    /// private relay with its own CA (or a self-signed certificate) is reached encrypted instead of in clear.
    pub ca_file: Option<PathBuf>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp_url: None,
            tls: "opportunistic".into(),
            user: None,
            password: None,
            from: String::new(),
            to: Vec::new(),
            alert_min_severity: mcbot_stages::ports::Severity::Critical,
            ca_file: None,
        }
    }
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Reconciliation with the exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Drift between a stored position and the exchange, in % of the position, that is corrected to the
    /// exchange's quantity (with a warning event); more puts the bot in safe mode.
    pub drift_tolerance_pct: Decimal,
    /// Holdings found on the account at the first reconcile that mcbot did not buy: `ignore` (measure drift on
    /// mcbot's share only) or `adopt` (take them over as positions at the current price).
    pub unmanaged_holdings: mcbot_schedules::jobs::UnmanagedHoldings,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self { drift_tolerance_pct: Decimal::ONE, unmanaged_holdings: Default::default() }
    }
}

/// The event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Events older than this many days are pruned by the health job.
    pub retention_days: i64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self { retention_days: 400 }
    }
}

/// Symbols and bar length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketConfig {
    /// Quote asset all symbols trade against.
    pub quote: String,
    /// Symbols traded.
    pub symbols: Vec<Symbol>,
    /// Bar length.
    pub timeframe: Timeframe,
}

impl Default for MarketConfig {
    fn default() -> Self {
        let symbols = ["BTCUSDT", "ETHUSDT"].iter().filter_map(|s| Symbol::new(s).ok()).collect();
        Self {
            quote: "USDT".into(),
            symbols,
            timeframe: Timeframe::from_minutes(60).unwrap_or_else(|_| unreachable!()),
        }
    }
}

/// The simulated market and account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimSettings {
    /// Seed of the random walk.
    pub seed: u64,
    /// Open time of the first simulated bar.
    pub start: DateTime<Utc>,
    /// Per-bar volatility of the walk.
    pub bar_vol: f64,
    /// Starting prices per symbol.
    pub start_prices: BTreeMap<Symbol, Decimal>,
    /// Candle CSV files to replay instead of the walk, per symbol (`timestamp,open,high,low,close,volume`).
    pub replay: BTreeMap<Symbol, PathBuf>,
    /// Starting quote cash.
    pub initial_cash: Decimal,
    /// Fee per side, fraction of notional.
    pub fee_rate: Decimal,
    /// Slippage in basis points.
    pub slippage_bps: Decimal,
    /// Price tick of every simulated symbol.
    pub tick_size: Decimal,
    /// Quantity step.
    pub step_size: Decimal,
    /// Minimum order value.
    pub min_notional: Decimal,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            seed: 42,
            start: DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default(), // 2026-01-01T00:00:00Z
            bar_vol: 0.01,
            start_prices: BTreeMap::new(),
            replay: BTreeMap::new(),
            initial_cash: Decimal::from(10_000),
            fee_rate: Decimal::new(1, 3),
            slippage_bps: Decimal::from(5),
            tick_size: Decimal::new(1, 2),
            step_size: Decimal::new(1, 5),
            min_notional: Decimal::from(10),
        }
    }
}

/// Which real venue to use and how; its URLs, keys and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExchangeConfig {
    /// The venue of modes paper, shadow and live.
    pub venue: Venue,
    /// Starting cash of the paper account (and the virtual cash shadow mode sizes with).
    pub paper_cash: Decimal,
    /// Fee per side charged by the paper fill engine.
    pub paper_fee_rate: Decimal,
    /// Binance spot.
    pub binance: crate::exchange::binance::BinanceSettings,
    /// Upbit (KRW markets).
    pub upbit: crate::exchange::upbit::UpbitSettings,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        Self {
            venue: Venue::Binance,
            paper_cash: Decimal::from(10_000),
            paper_fee_rate: Decimal::new(1, 3),
            binance: Default::default(),
            upbit: Default::default(),
        }
    }
}

/// A real venue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Venue {
    /// Binance spot.
    Binance,
    /// Upbit.
    Upbit,
}

/// Strategy name and parameters (values as TOML scalars; the strategy validates them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StrategyConfig {
    /// Strategy name.
    pub name: String,
    /// Parameters.
    pub params: BTreeMap<String, toml::Value>,
    /// Quick-filter gate: a recent-window backtest that must pass before entries.
    pub gate: QuickFilter,
}

impl Default for StrategyConfig {
    fn default() -> Self {
        Self { name: "tsmom".into(), params: BTreeMap::new(), gate: QuickFilter::default() }
    }
}

impl StrategyConfig {
    /// Parameters as strings, the form strategies parse.
    pub fn params_as_strings(&self) -> BTreeMap<String, String> {
        self.params.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect()
    }
}

/// Pipeline settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// Bars fetched per symbol (raised to the strategy's warm-up).
    pub lookback_bars: usize,
    /// Per-stage time limit in seconds.
    pub stage_timeout_secs: u64,
    /// Bars the stored data may lag before health calls it stale.
    pub max_stale_bars: i32,
    /// Attempts of a cycle whose stage failed transiently, within the same bar.
    pub retry_attempts: u32,
    /// Delay before the first re-run of a failed cycle, doubled each time.
    pub retry_delay_ms: u64,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self { lookback_bars: 100, stage_timeout_secs: 30, max_stale_bars: 2, retry_attempts: 3, retry_delay_ms: 2_000 }
    }
}

/// Cron expressions (six fields, with seconds, UTC) and timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Seconds after each bar close the trading cycle fires (exchanges publish the bar a moment late). With a
    /// market stream this is the fallback for a bar the stream did not deliver.
    pub bar_delay_secs: u32,
    /// With a market stream (Binance), run the cycle as soon as every symbol's bar has closed instead of waiting
    /// for `bar_delay_secs`.
    pub trigger_on_stream: bool,
    /// A missed fire older than this is not caught up on start.
    pub grace_secs: i64,
    /// A `running` ledger row older than this is from a dead process.
    pub stale_run_secs: i64,
    /// A pending order the exchange still does not know this long after it was created never reached it:
    /// reconciliation closes it as not placed (sooner, it may only be slow to show; entries stay blocked).
    pub unplaced_order_secs: i64,
    /// After SIGTERM, how long a running job may take to finish and commit before the process exits anyway
    /// (its run is taken over at the next start).
    pub shutdown_grace_secs: u64,
    /// Health check.
    pub health: String,
    /// Reconciliation.
    pub reconcile: String,
    /// Daily report.
    pub report_daily: String,
    /// Weekly report.
    pub report_weekly: String,
    /// Monthly report.
    pub report_monthly: String,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            bar_delay_secs: 5,
            trigger_on_stream: true,
            grace_secs: 600,
            stale_run_secs: 900,
            unplaced_order_secs: 120,
            shutdown_grace_secs: 30,
            health: "30 */5 * * * *".into(),
            reconcile: "45 */15 * * * *".into(),
            report_daily: "0 5 0 * * *".into(),
            report_weekly: "0 10 0 * * 1".into(),
            report_monthly: "0 15 0 1 * *".into(),
        }
    }
}

/// Storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://...` or `sqlite://...`; empty means the embedded SQLite file under `data_dir`.
    pub url: Option<String>,
    /// Where the embedded database and the kill switch live.
    pub data_dir: PathBuf,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: None, data_dir: PathBuf::from("data") }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` for a terminal, `json` for log collectors.
    pub format: LogFormat,
    /// tracing filter, e.g. `info` or `mcbot=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Pretty, level: "info".into() }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// Loads `dir/default.toml`, then `dir/<profile>.toml` for each profile given, then environment overrides
    /// from `vars` (normally `std::env::vars()`), and validates the result.
    pub fn load(
        dir: &Path,
        profiles: &[String],
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::load_as(dir, profiles, vars, None)
    }

    /// [`Config::load`] with the mode of `--mode` applied before validation, since some rules depend on the
    /// mode (a simulated symbol needs a start price only in mode mock).
    pub fn load_as(
        dir: &Path,
        profiles: &[String],
        vars: impl IntoIterator<Item = (String, String)>,
        mode: Option<Mode>,
    ) -> Result<Self, ConfigError> {
        let mut origins = Origins::new();
        let mut secrets = Vec::new();
        let result = (|| {
            let mut merged = read_layer(&dir.join("default.toml"), &mut origins, &mut secrets)?;
            for p in profiles {
                let path = dir.join(format!("{p}.toml"));
                merge(&mut merged, read_layer(&path, &mut origins, &mut secrets)?);
            }
            apply_env(&mut merged, vars, &mut origins, &mut secrets)?;
            let mut cfg: Config = Config::deserialize(merged)
                .map_err(|e| ConfigError::Env { var: "MCBOT_*".into(), message: e.to_string() })?;
            if let Some(mode) = mode {
                cfg.mode = mode;
            }
            cfg.validate(&origins)?;
            Ok(cfg)
        })();
        result.map_err(|e: ConfigError| e.redacted(&secrets))
    }

    /// Checks a merged document deserialises; used after each environment override to name the variable.
    fn deserialize_value(v: &toml::Value) -> Result<(), String> {
        Config::deserialize(v.clone()).map(|_| ()).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// The rules that involve more than one key (each key's own range was checked as its layer was read).
    fn validate(&self, origins: &Origins) -> Result<(), ConfigError> {
        for rule in RULES {
            (rule.check)(self).map_err(|message| ConfigError::Invalid {
                key: rule.key.into(),
                message,
                origin: origin_of(origins, rule.key),
            })?;
        }
        Ok(())
    }

    /// The configuration shipped in the repository: built-in defaults with `config/default.toml` over them.
    /// The README's key list shows these values.
    pub fn shipped_defaults() -> toml::Value {
        let mut base =
            toml::Value::try_from(Config::default()).unwrap_or_else(|_| toml::Value::Table(toml::Table::new()));
        if let Ok(file) = toml::from_str::<toml::Value>(include_str!("../../config/default.toml")) {
            merge(&mut base, file);
        }
        base
    }

    /// The README's `Configuration` key list, generated from the key table and the rules.
    pub fn reference_markdown() -> String {
        let rules: Vec<(&str, &str)> = RULES.iter().map(|r| (r.key, r.doc)).collect();
        keys::reference_markdown(&Self::shipped_defaults(), &rules)
    }
}

/// A rule across keys: the key it is reported under, what it says (for the README), and its check.
pub struct Rule {
    /// The key named in the message.
    pub key: &'static str,
    /// The rule in words.
    pub doc: &'static str,
    /// Returns what is wrong.
    pub check: fn(&Config) -> Result<(), String>,
}

/// Every rule that relates keys to each other.
pub const RULES: &[Rule] = &[
    Rule { key: "market.symbols", doc: "no symbol twice (a duplicate would change the weights)", check: no_duplicates },
    Rule {
        key: "market.symbols",
        doc: "every symbol trades against `market.quote` (`BTCUSDT` or `KRW-BTC` style)",
        check: symbols_match_quote,
    },
    Rule {
        key: "sim.start_prices",
        doc: "in mode mock without `sim.replay`, every symbol has a start price",
        check: start_prices_cover_symbols,
    },
    Rule {
        key: "sim.replay",
        doc: "when set, names every symbol and no other, in mode mock",
        check: replay_covers_symbols,
    },
    Rule {
        key: "schedule.bar_delay_secs",
        doc: "shorter than one bar of `market.timeframe`",
        check: bar_delay_within_bar,
    },
    Rule {
        key: "schedule.stale_run_secs",
        doc: "longer than a whole cycle may run (`pipeline.retry_attempts` x 4 stages x `pipeline.stage_timeout_secs`)",
        check: stale_after_longest_cycle,
    },
    Rule {
        key: "pretrade.allow_list",
        doc: "names only symbols of `market.symbols`",
        check: allow_list_within_symbols,
    },
    Rule {
        key: "market.quote",
        doc: "equals `exchange.upbit.quote` when Upbit is the venue of a real-market mode",
        check: quote_matches_upbit,
    },
    Rule {
        key: "exchange.upbit.tick_table",
        doc: "every band has a positive tick that divides its start",
        check: |c| c.exchange.upbit.tick_table.validate().map_err(|e| e.to_string()),
    },
    Rule {
        key: "exchange.binance.stream.reconnect_max_ms",
        doc: "at least `exchange.binance.stream.reconnect_base_ms`",
        check: |c| {
            let s = &c.exchange.binance.stream;
            if s.reconnect_max_ms >= s.reconnect_base_ms {
                Ok(())
            } else {
                Err(format!("must be at least reconnect_base_ms ({}), got {}", s.reconnect_base_ms, s.reconnect_max_ms))
            }
        },
    },
    Rule {
        key: "exchange.binance.stream.idle_timeout_ms",
        doc: "longer than `exchange.binance.stream.ping_interval_ms`",
        check: |c| {
            let s = &c.exchange.binance.stream;
            if s.idle_timeout_ms > s.ping_interval_ms {
                Ok(())
            } else {
                Err(format!("must be longer than ping_interval_ms ({}), got {}", s.ping_interval_ms, s.idle_timeout_ms))
            }
        },
    },
    Rule {
        key: "exchange.binance.stream.cache_bars",
        doc: "at least `exchange.binance.stream.warmup_bars`",
        check: |c| {
            let s = &c.exchange.binance.stream;
            if s.cache_bars >= s.warmup_bars {
                Ok(())
            } else {
                Err(format!("must be at least warmup_bars ({}), got {}", s.warmup_bars, s.cache_bars))
            }
        },
    },
    Rule {
        key: "notify.routes",
        doc: "names only event kinds (`mcbot events --kind` lists them)",
        check: |c| match c.notify.routes.keys().find(|k| mcbot_stages::ports::EventKind::parse(k).is_none()) {
            Some(k) => Err(format!("{k} is not an event kind")),
            None => Ok(()),
        },
    },
    Rule {
        key: "notify.telegram",
        doc: "when the section is present, `token` (from env or `_FILE`) and at least one of `chat_ids` are set",
        check: |c| match &c.notify.telegram {
            Some(t) if t.token.as_deref().is_none_or(str::is_empty) => {
                Err("has no token: set MCBOT_NOTIFY__TELEGRAM__TOKEN or MCBOT_NOTIFY__TELEGRAM__TOKEN_FILE".into())
            }
            Some(t) if t.chat_ids.is_empty() => {
                Err("has no chat_ids: list the chats that may hear and command the bot".into())
            }
            _ => Ok(()),
        },
    },
    Rule {
        key: "notify.discord.webhooks",
        doc: "when `[notify.discord]` is present, `alerts` (the fallback of the others) is set",
        check: |c| match &c.notify.discord {
            Some(d) if d.webhooks.alerts.as_deref().is_none_or(str::is_empty) => {
                Err("has no alerts webhook (MCBOT_NOTIFY__DISCORD__WEBHOOKS__ALERTS)".into())
            }
            _ => Ok(()),
        },
    },
    Rule {
        key: "notify.email",
        doc: "when the section is present, `smtp_url`, `from` and at least one of `to` are set",
        check: |c| match &c.notify.email {
            Some(e) if e.smtp_url.as_deref().is_none_or(str::is_empty) => Err("has no smtp_url".into()),
            Some(e) if e.from.is_empty() || e.to.is_empty() => Err("needs from and at least one to".into()),
            _ => Ok(()),
        },
    },
];

fn no_duplicates(c: &Config) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    match c.market.symbols.iter().find(|s| !seen.insert(s.as_str())) {
        Some(dup) => Err(format!("lists {dup} twice")),
        None => Ok(()),
    }
}

fn symbols_match_quote(c: &Config) -> Result<(), String> {
    let q = &c.market.quote;
    let bad = c.market.symbols.iter().find(|s| {
        let s = s.as_str();
        let base = s.strip_prefix(&format!("{q}-")).or_else(|| s.strip_suffix(q.as_str()));
        base.map(|b| b.trim_end_matches(['-', '_'])).is_none_or(str::is_empty)
    });
    match bad {
        Some(s) => Err(format!("{s} does not trade against the quote {q} (market.quote)")),
        None => Ok(()),
    }
}

fn start_prices_cover_symbols(c: &Config) -> Result<(), String> {
    if c.mode != Mode::Mock || !c.sim.replay.is_empty() {
        return Ok(());
    }
    match c.market.symbols.iter().find(|s| !c.sim.start_prices.contains_key(*s)) {
        Some(s) => Err(format!("{s} has no start price (add {s} = \"<price>\" under [sim.start_prices])")),
        None => Ok(()),
    }
}

fn replay_covers_symbols(c: &Config) -> Result<(), String> {
    if c.mode != Mode::Mock || c.sim.replay.is_empty() {
        return Ok(());
    }
    if let Some(s) = c.market.symbols.iter().find(|s| !c.sim.replay.contains_key(*s)) {
        return Err(format!("{s} has no replay file"));
    }
    match c.sim.replay.keys().find(|s| !c.market.symbols.contains(s)) {
        Some(s) => Err(format!("{s} is not in market.symbols")),
        None => Ok(()),
    }
}

fn bar_delay_within_bar(c: &Config) -> Result<(), String> {
    let bar = u64::from(c.market.timeframe.minutes()) * 60;
    let delay = u64::from(c.schedule.bar_delay_secs);
    if delay < bar {
        Ok(())
    } else {
        Err(format!("must be shorter than one {} bar ({bar} s), got {delay}", c.market.timeframe))
    }
}

fn stale_after_longest_cycle(c: &Config) -> Result<(), String> {
    let longest =
        u64::from(c.pipeline.retry_attempts.max(1)).saturating_mul(4).saturating_mul(c.pipeline.stage_timeout_secs);
    let stale = u64::try_from(c.schedule.stale_run_secs).unwrap_or(0);
    if stale > longest {
        Ok(())
    } else {
        Err(format!("must be longer than the longest cycle ({longest} s, from the pipeline settings), got {stale}"))
    }
}

fn allow_list_within_symbols(c: &Config) -> Result<(), String> {
    match c.pretrade.allow_list.iter().find(|s| !c.market.symbols.contains(s)) {
        Some(s) => Err(format!("{s} is not in market.symbols")),
        None => Ok(()),
    }
}

fn quote_matches_upbit(c: &Config) -> Result<(), String> {
    if c.mode == Mode::Mock || c.exchange.venue != Venue::Upbit || c.market.quote == c.exchange.upbit.quote {
        return Ok(());
    }
    Err(format!("must be {} for venue upbit (exchange.upbit.quote), got {}", c.exchange.upbit.quote, c.market.quote))
}

/// Reads one layer. The TOML is parsed with positions, so every value's origin (file and line) is known;
/// secrets are taken as the text they are written as (`0x1F` stays `0x1F`, digits stay a string); a float where
/// an exact decimal belongs is refused; every value is checked against its range; then the layer on its own is
/// deserialised strictly, so unknown or mistyped keys are reported with this file's line.
fn read_layer(path: &Path, origins: &mut Origins, secrets: &mut Vec<String>) -> Result<toml::Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        let hint = if source.kind() == std::io::ErrorKind::NotFound {
            " (mcbot reads config/ under the current directory: run it from the directory holding config/, or \
             point at one with --config DIR or MCBOT_CONFIG=DIR)"
        } else {
            ""
        };
        ConfigError::Read { path: path.into(), source, hint }
    })?;
    let parse =
        |message: String| ConfigError::Parse { path: path.into(), message: scrub_secret_lines(&message, &text) };
    let mut root = toml::de::DeTable::parse(&text).map_err(|e| parse(e.to_string().trim_end().to_owned()))?;
    let mut layer = Layer { path, text: &text, origins, secrets };
    layer.walk(root.get_mut(), "")?;
    let value = toml::Value::deserialize(toml::de::Deserializer::from(root.clone()))
        .map_err(|e| parse(e.to_string().trim_end().to_owned()))?;
    check_ranges(&value, "", &mut |key| origin_of(layer.origins, key))?;
    Config::deserialize(toml::de::Deserializer::from(root)).map_err(|mut e| {
        e.set_input(Some(&text));
        parse(e.to_string().trim_end().to_owned())
    })?;
    Ok(value)
}

/// The state of reading one file.
struct Layer<'a> {
    path: &'a Path,
    text: &'a str,
    origins: &'a mut Origins,
    secrets: &'a mut Vec<String>,
}

impl Layer<'_> {
    fn walk(&mut self, table: &mut toml::de::DeTable<'_>, prefix: &str) -> Result<(), ConfigError> {
        for (k, v) in table.iter_mut() {
            let key = if prefix.is_empty() { k.get_ref().to_string() } else { format!("{prefix}.{}", k.get_ref()) };
            let span = v.span();
            let line = self.text.get(..span.start).map_or(0, |t| t.matches('\n').count()) + 1;
            let origin = format!("{}, line {line}", self.path.display());
            if let toml::de::DeValue::Table(t) = v.get_mut() {
                self.origins.insert(key.clone(), origin);
                self.walk(t, &key)?;
                continue;
            }
            self.origins.insert(key.clone(), origin.clone());
            let Some(spec) = keys::spec(&key) else { continue };
            let raw = self.text.get(span.clone()).unwrap_or_default().trim();
            match (spec.kind, v.get_ref()) {
                (Kind::Secret, toml::de::DeValue::String(s)) => self.secrets.push(s.to_string()),
                (
                    Kind::Secret,
                    toml::de::DeValue::Integer(_)
                    | toml::de::DeValue::Float(_)
                    | toml::de::DeValue::Boolean(_)
                    | toml::de::DeValue::Datetime(_),
                ) => {
                    self.secrets.push(raw.to_owned());
                    *v.get_mut() = toml::de::DeValue::String(raw.to_owned().into());
                }
                (Kind::Decimal, toml::de::DeValue::Float(_)) => {
                    return Err(ConfigError::Invalid {
                        key,
                        message: format!("exact decimals are quoted strings: write \"{raw}\", not {raw}"),
                        origin: format!(" ({origin})"),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Checks every leaf of `value` that has a row in the key table against its range.
fn check_ranges(value: &toml::Value, prefix: &str, origin: &mut dyn FnMut(&str) -> String) -> Result<(), ConfigError> {
    let Some(table) = value.as_table() else { return Ok(()) };
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match keys::spec(&key) {
            Some(spec) => spec.check(v).map_err(|message| ConfigError::Invalid {
                key: key.clone(),
                message,
                origin: origin(&key),
            })?,
            None => check_ranges(v, &key, origin)?,
        }
    }
    Ok(())
}

/// Removes from a parser message the values of lines that set a secret (parser messages quote the offending
/// line, and a secret with a typo in it must not be printed).
fn scrub_secret_lines(message: &str, text: &str) -> String {
    let mut out = message.to_owned();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        let k = k.trim().trim_matches(['"', '\'']);
        let v = v.trim();
        if !v.is_empty() && keys::secret_leaf_names().any(|s| k == s || k.ends_with(&format!(".{s}"))) {
            out = out.replace(v, "[redacted]");
        }
    }
    out
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests;
