//! Command-line arguments (clap). Parsing is all this module does; validation of values happens here too, so a
//! wrong argument exits 2 with clap's message before anything is opened.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{LogFormat, Mode};

/// mcbot: a crypto trading bot with a scheduled four-stage pipeline.
#[derive(Debug, Parser)]
#[command(name = "mcbot", version, about, propagate_version = true)]
pub struct Cli {
    /// Directory with default.toml and the profiles.
    #[arg(long, global = true, env = "MCBOT_CONFIG", default_value = "config")]
    pub config: PathBuf,
    /// Extra profile(s) to layer over default.toml (`<config>/<profile>.toml`), in order.
    #[arg(long, global = true, env = "MCBOT_PROFILE", value_delimiter = ',')]
    pub profile: Vec<String>,
    /// Trading mode; overrides the config. Its profile (e.g. paper.toml) is layered in if it exists.
    #[arg(long, global = true, value_enum)]
    pub mode: Option<Mode>,
    /// Database URL (postgres://... or sqlite://...); default: embedded SQLite under ./data.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Output: tables for people or one JSON document for scripts.
    #[arg(long, global = true, env = "MCBOT_OUTPUT", value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Log format; overrides the config.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Continue a database whose book another mode or venue wrote, making it this mode's book (run-once and
    /// scheduler refuse such a database otherwise).
    #[arg(long, global = true)]
    pub adopt_book: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable tables.
    Text,
    /// One JSON document.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the trading pipeline once for the last closed bar (or one stage of it).
    RunOnce(RunOnceArgs),
    /// Run all jobs on their schedules until SIGINT/SIGTERM.
    Scheduler,
    /// Ask the running scheduler's admin server whether it is alive (`--probe`: for Docker/Kubernetes, exit 0/1).
    Health(crate::commands::health::HealthArgs),
    /// List the jobs and their next fire times.
    Jobs,
    /// Apply database migrations and exit.
    Migrate,
    /// Equity, cash, positions, safe mode and the last runs.
    Status,
    /// Download candles from an exchange to Parquet, or import a CSV.
    Data(Box<crate::commands::data::DataArgs>),
    /// Backtest a strategy on candle files (`backtest merge DIR...` combines sweep shards).
    Backtest(Box<crate::commands::backtest::BacktestCli>),
    /// Validate a strategy against overfitting (IS/OOS, walk-forward, CPCV, PBO, deflated Sharpe).
    Validate(Box<crate::commands::validate::ValidateArgs>),
    /// Stop new entries; exits (stops, reductions) still run. Takes effect before the next order.
    Pause(ReasonArgs),
    /// Trade again after a pause or a kill (safe mode and breakers stay until reset).
    Resume(ReasonArgs),
    /// Halt trading: no entries, open orders cancelled; with --flatten every position is closed.
    Kill(KillArgs),
    /// Clear safe mode after checking what turned it on.
    ResetSafeMode(RequiredReason),
    /// Clear one tripped circuit breaker (names as `mcbot status` shows them).
    ResetBreaker(ResetBreakerArgs),
    /// Check every live guard (environment, confirmation file, risk limits, exchange, clock, balances, API key
    /// rights, dry run, reconciliation) and print each with ✓/✗ and why; exit 0 only when all pass.
    Preflight,
    /// Read the event log: every fact the bot recorded, in order.
    Events(EventsArgs),
    /// A daily, weekly or monthly report on demand: printed, written with --out DIR, delivered with --send.
    Report(crate::commands::report::ReportArgs),
    /// Copy the embedded SQLite database to FILE while the bot may be running (for PostgreSQL: use pg_dump).
    Backup(BackupArgs),
    /// Configuration: `mcbot config keys` lists every key with its type, valid range and default.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Notifications: send a test message, show the outbox, re-queue failed deliveries.
    #[command(subcommand)]
    Notify(NotifyCommand),
}

/// `mcbot notify` subcommands.
#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test message through each configured channel (or one) now and print the outcome of each.
    Test {
        /// Only this channel.
        #[arg(long, value_parser = ["telegram", "discord", "email", "log"])]
        channel: Option<String>,
    },
    /// Pending, sent, failed and suppressed deliveries per channel.
    Status,
    /// Re-queue failed deliveries (of one channel, or all) for the next attempt.
    Retry {
        /// Only this channel.
        #[arg(long, value_parser = ["telegram", "discord", "email", "log"])]
        channel: Option<String>,
    },
}

/// Why an operator issues a command; recorded with it.
#[derive(Debug, clap::Args)]
pub struct ReasonArgs {
    /// Why (recorded in the event log).
    #[arg(long, default_value = "operator")]
    pub reason: String,
}

/// A reason that must be given.
#[derive(Debug, clap::Args)]
pub struct RequiredReason {
    /// Why it is safe to clear (recorded in the event log).
    #[arg(long)]
    pub reason: String,
}

/// `kill` arguments.
#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// Also close every position (at the next trading cycle, as exits).
    #[arg(long)]
    pub flatten: bool,
    /// Leave open orders at the venue alone.
    #[arg(long)]
    pub no_cancel: bool,
    /// Why (recorded in the event log).
    #[arg(long, default_value = "operator")]
    pub reason: String,
}

/// `reset-breaker` arguments.
#[derive(Debug, clap::Args)]
pub struct ResetBreakerArgs {
    /// The breaker, e.g. `daily_loss`.
    pub name: String,
    /// Why it is safe to clear (recorded in the event log).
    #[arg(long)]
    pub reason: String,
}

/// `events` arguments.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Only events after this id.
    #[arg(long, default_value_t = 0)]
    pub since: i64,
    /// Only these kinds (repeat or comma-separate), e.g. `order_filled,safe_mode_on`.
    #[arg(long, value_delimiter = ',')]
    pub kind: Vec<String>,
    /// At most this many (without --follow); 0 for all.
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
    /// Keep printing new events as they are recorded, like `tail -f`.
    #[arg(long)]
    pub follow: bool,
}

/// `mcbot config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every configuration key with its type, valid range, default and purpose (the README's list).
    Keys,
    /// Load and validate the configuration (files, profiles, environment) and exit: 0 when it is valid.
    Check,
}

/// `backup` arguments.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the copy; must not exist yet.
    pub file: PathBuf,
}

/// `run-once` arguments.
#[derive(Debug, clap::Args)]
pub struct RunOnceArgs {
    /// Which stage(s).
    #[arg(long, value_enum, default_value_t = StageArg::All)]
    pub stage: StageArg,
}

/// Stage selection on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StageArg {
    /// RiskCheck, DataCollection, Analysis, Execution.
    All,
    /// RiskCheck only.
    Risk,
    /// DataCollection only.
    Data,
    /// Analysis over stored candles.
    Analysis,
    /// RiskCheck and Execution of this bar's recorded decision.
    Execution,
}
