//! Configuration: `config/default.toml`, then the profile named after the mode (or `--profile`), then
//! `MCBOT_SECTION__KEY` environment overrides. Every layer is checked on its own, so an unknown or mistyped key
//! is reported with the file, line and key at start-up, never at the first trade.

mod env;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use mcbot_schedules::Schedule;
use mcbot_stages::domain::{Decimal, Symbol, Timeframe};
use mcbot_stages::pipeline::execution::SizingParams;
use mcbot_stages::pipeline::gate::QuickFilter;
use mcbot_stages::pipeline::pretrade::PreTradeLimits;
use mcbot_stages::pipeline::risk::RiskLimits;
use serde::{Deserialize, Serialize};

pub use env::{apply_env, secret_from_env};

/// A configuration problem; always exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
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
    /// A value parsed but is not acceptable.
    #[error("config key {key}: {message}")]
    Invalid {
        /// Dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
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
    /// Logging.
    pub log: LogConfig,
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
        let mut merged = read_layer(&dir.join("default.toml"))?;
        for p in profiles {
            let path = dir.join(format!("{p}.toml"));
            merge(&mut merged, read_layer(&path)?);
        }
        apply_env(&mut merged, vars)?;
        let cfg: Config = Config::deserialize(merged.clone())
            .map_err(|e| ConfigError::Env { var: "MCBOT_*".into(), message: e.to_string() })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks a merged document deserialises; used after each environment override to name the variable.
    fn deserialize_value(v: &toml::Value) -> Result<(), String> {
        Config::deserialize(v.clone()).map(|_| ()).map_err(|e| e.to_string().trim_end().to_owned())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| Err(ConfigError::Invalid { key: key.into(), message });
        if self.market.symbols.is_empty() {
            return invalid("market.symbols", "at least one symbol is required".into());
        }
        if self.pipeline.lookback_bars < 2 {
            return invalid("pipeline.lookback_bars", "must be at least 2".into());
        }
        for (key, expr) in [
            ("schedule.health", &self.schedule.health),
            ("schedule.reconcile", &self.schedule.reconcile),
            ("schedule.report_daily", &self.schedule.report_daily),
            ("schedule.report_weekly", &self.schedule.report_weekly),
            ("schedule.report_monthly", &self.schedule.report_monthly),
        ] {
            if let Err(e) = Schedule::parse(expr) {
                return invalid(key, e.to_string());
            }
        }
        if !(60..=86_400).contains(&self.schedule.stale_run_secs) {
            let got = self.schedule.stale_run_secs;
            return invalid("schedule.stale_run_secs", format!("must be in [60, 86400], got {got}"));
        }
        if !(1..=600).contains(&self.schedule.shutdown_grace_secs) {
            let got = self.schedule.shutdown_grace_secs;
            return invalid("schedule.shutdown_grace_secs", format!("must be in [1, 600], got {got}"));
        }
        let tol = self.reconcile.drift_tolerance_pct;
        if tol <= Decimal::ZERO || tol > Decimal::from(50) {
            return invalid("reconcile.drift_tolerance_pct", format!("must be in (0, 50], got {tol}"));
        }
        if !(1..=36_500).contains(&self.events.retention_days) {
            let got = self.events.retention_days;
            return invalid("events.retention_days", format!("must be in [1, 36500], got {got}"));
        }
        if self.schedule.unplaced_order_secs < 10 {
            // An exchange may take a few seconds to show an accepted order to a lookup.
            return invalid("schedule.unplaced_order_secs", "must be at least 10".into());
        }
        for (key, v) in [
            ("risk.max_daily_loss_pct", self.risk.max_daily_loss_pct),
            ("risk.max_weekly_loss_pct", self.risk.max_weekly_loss_pct),
            ("risk.max_drawdown_pct", self.risk.max_drawdown_pct),
            ("sim.initial_cash", self.sim.initial_cash),
            ("sim.tick_size", self.sim.tick_size),
            ("sim.step_size", self.sim.step_size),
        ] {
            if v <= Decimal::ZERO {
                return invalid(key, format!("must be positive, got {v}"));
            }
        }
        if self.sim.fee_rate < Decimal::ZERO || self.sim.fee_rate >= Decimal::ONE {
            return invalid("sim.fee_rate", format!("must be in [0, 1), got {}", self.sim.fee_rate));
        }
        if !(0.0..1.0).contains(&self.sim.bar_vol) {
            return invalid("sim.bar_vol", format!("must be in [0, 1), got {}", self.sim.bar_vol));
        }
        Ok(())
    }
}

fn read_layer(path: &Path) -> Result<toml::Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    let parse = |message: String| ConfigError::Parse { path: path.into(), message };
    // Deserialising the layer on its own into the strict type pins errors to this file's lines and keys.
    toml::from_str::<Config>(&text).map_err(|e| parse(e.to_string().trim_end().to_owned()))?;
    toml::from_str::<toml::Value>(&text).map_err(|e| parse(e.to_string()))
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
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn layers_merge_and_env_overrides() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "default.toml",
            "[market]\nsymbols = [\"BTCUSDT\"]\ntimeframe = \"1h\"\n[risk]\nmax_drawdown_pct = \"20\"\n",
        );
        write(d.path(), "paper.toml", "[risk]\nmax_daily_loss_pct = \"3\"\n");
        let vars = [
            ("MCBOT_RISK__MAX_DRAWDOWN_PCT".to_string(), "15".to_string()),
            ("MCBOT_SHARED_DIR".to_string(), "../shared".to_string()),
        ];
        let c = Config::load(d.path(), &["paper".into()], vars).unwrap();
        assert_eq!(c.risk.max_drawdown_pct, Decimal::from(15));
        assert_eq!(c.risk.max_daily_loss_pct, Decimal::from(3));
        assert_eq!(c.market.symbols.len(), 1);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "default.toml", "mode = \"mock\"\n\n[risk]\nmax_drawdwn_pct = \"20\"\n");
        let e = Config::load(d.path(), &[], []).unwrap_err().to_string();
        assert!(e.contains("default.toml"), "{e}");
        assert!(e.contains("max_drawdwn_pct"), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "default.toml", "[schedule]\nhealth = \"every minute\"\n");
        let e = Config::load(d.path(), &[], []).unwrap_err().to_string();
        assert!(e.contains("schedule.health"), "{e}");
        write(d.path(), "default.toml", "[market]\ntimeframe = \"7m\"\n");
        let e = Config::load(d.path(), &[], []).unwrap_err().to_string();
        assert!(e.contains("7m") && e.contains("line 2"), "{e}");
        write(d.path(), "default.toml", "[schedule]\nunplaced_order_secs = 0\n");
        let e = Config::load(d.path(), &[], []).unwrap_err().to_string();
        assert!(e.contains("schedule.unplaced_order_secs"), "{e}");
    }
}
