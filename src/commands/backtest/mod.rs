//! `mcbot backtest`: one or several candle files through a strategy with the fast kernel (or the event-driven
//! replay), a parameter sweep, trade list / equity / chart outputs. Text tables for people, one JSON document
//! with `--output json`.
//!
//! The work is split so tests call exactly what the command runs: [`execute`] returns the report as data, and
//! [`run`] only prints it.

pub mod chart;
pub mod data;
pub mod export;
pub mod shard;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use mcbot_stages::backtest::sweep::{self, ParamRange, Shard, SweepResult};
use mcbot_stages::backtest::{
    self, BacktestError, ExitReason, Fill, Metrics, SimConfig, Trade, TrailingAtr, metrics, simulate_portfolio,
};
use mcbot_stages::domain::{Symbol, Timeframe};
use mcbot_stages::strategy::{Columns, registry};
use serde::Serialize;

use crate::output::{print_json, table};
use data::Series;

/// Why `mcbot backtest` / `mcbot validate` failed; [`CommandError::exit_code`] tells usage (2) from runtime (1).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The arguments are wrong (unknown strategy or parameter, out-of-range setting): exit 2.
    #[error("{0}")]
    Usage(String),
    /// An input file cannot be read or is malformed: exit 2, like every bad input (the message names the file and
    /// the row).
    #[error(transparent)]
    Data(#[from] data::DataError),
    /// An output file cannot be written: exit 1.
    #[error("cannot write {path}: {message}")]
    Output {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

impl CommandError {
    /// Process exit code: 2 for usage errors, 1 for runtime failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::Data(_) => 2,
            Self::Output { .. } => 1,
        }
    }
}

impl From<BacktestError> for CommandError {
    fn from(e: BacktestError) -> Self {
        Self::Usage(e.to_string())
    }
}

impl From<registry::RegistryError> for CommandError {
    fn from(e: registry::RegistryError) -> Self {
        Self::Usage(e.to_string())
    }
}

/// Parses `KEY=VALUE`.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    if k.trim().is_empty() {
        return Err(format!("{s:?}: empty key"));
    }
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

/// Parses `PERIOD:MULTIPLE`, e.g. `14:3`.
fn trailing_atr(s: &str) -> Result<TrailingAtr, String> {
    let bad = || format!("{s:?}: expected PERIOD:MULTIPLE, e.g. 14:3");
    let (p, m) = s.split_once(':').ok_or_else(bad)?;
    Ok(TrailingAtr { period: p.trim().parse().map_err(|_| bad())?, multiple: m.trim().parse().map_err(|_| bad())? })
}

/// Which engine runs the strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// The vectorised kernel (fast; what sweeps use).
    Kernel,
    /// The strategy's `targets` called bar by bar, as the live pipeline calls it (slower; same trades).
    Event,
}

/// Fill, costs and stops, shared by `backtest` and `validate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Strategy name: sma-cross, donchian, vol-breakout, bollinger-rsi, tsmom.
    #[arg(long, default_value = "sma-cross")]
    pub strategy: String,
    /// Strategy parameter KEY=VALUE (repeatable), e.g. --param fast=10 --param slow=30.
    #[arg(long = "param", value_parser = key_value)]
    pub params: Vec<(String, String)>,
    /// When signals fill: next-open (the reference and the live bot) or close (optimistic).
    #[arg(long, default_value = "next-open", value_parser = ["next-open", "close"])]
    pub fill: String,
    /// Fee per side as a fraction of notional.
    #[arg(long, default_value_t = 0.001)]
    pub fee: f64,
    /// Slippage per fill as a fraction of price (against the trader).
    #[arg(long, default_value_t = 0.0)]
    pub slippage: f64,
    /// Starting cash.
    #[arg(long, default_value_t = 10_000.0)]
    pub cash: f64,
    /// Stop-loss as a fraction below the entry price, e.g. 0.05.
    #[arg(long)]
    pub stop_loss: Option<f64>,
    /// Take-profit as a fraction above the entry price, e.g. 0.1.
    #[arg(long)]
    pub take_profit: Option<f64>,
    /// ATR trailing stop PERIOD:MULTIPLE, e.g. 14:3.
    #[arg(long, value_parser = trailing_atr)]
    pub trailing_atr: Option<TrailingAtr>,
    /// Bar length (1m, 5m, 1h, ...) for annualising; default: from the file name (NAME-1h.csv) or bar spacing.
    #[arg(long)]
    pub timeframe: Option<Timeframe>,
}

impl SimArgs {
    /// The simulator settings (validated).
    pub fn sim_config(&self) -> Result<SimConfig, CommandError> {
        let cfg = SimConfig {
            init_cash: self.cash,
            fee: self.fee,
            slippage: self.slippage,
            fill: self.fill.parse::<Fill>()?,
            stop_loss: self.stop_loss,
            take_profit: self.take_profit,
            trailing_atr: self.trailing_atr,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The `--param` pairs as a map (a repeated key keeps its last value).
    pub fn param_map(&self) -> BTreeMap<String, String> {
        self.params.iter().cloned().collect()
    }

    /// The timeframe: `--timeframe`, else every file's own, which must agree.
    pub fn timeframe(&self, series: &[Series]) -> Result<Timeframe, CommandError> {
        if let Some(tf) = self.timeframe {
            return Ok(tf);
        }
        let mut found = series.iter().map(|s| (s.name.as_str(), s.timeframe));
        let Some((first_name, Some(first))) = found.next() else {
            return Err(CommandError::Usage(format!(
                "cannot tell the timeframe of {}: name it NAME-1h.csv or pass --timeframe",
                series.first().map_or("the data", |s| s.name.as_str())
            )));
        };
        for (name, tf) in found {
            if tf != Some(first) {
                return Err(CommandError::Usage(format!(
                    "{name} is not {first} like {first_name}: pass --timeframe or use files of one timeframe"
                )));
            }
        }
        Ok(first)
    }
}

/// `mcbot backtest` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BacktestArgs {
    /// Candle file(s), .csv or .parquet, a directory (its .csv and .parquet files) or a quoted pattern
    /// (`'data/*-1m.parquet'`); several files trade as one portfolio sharing cash, or are swept one by one.
    #[arg(long, required = true)]
    pub data: Vec<PathBuf>,
    /// Strategy, fills and costs.
    #[command(flatten)]
    pub sim: SimArgs,
    /// Engine: the vectorised kernel, or the strategy called bar by bar (one file only).
    #[arg(long, value_enum, default_value_t = Engine::Kernel)]
    pub engine: Engine,
    /// Sweep a parameter: NAME=FROM..TO:STEP or NAME=A,B,C (repeatable; the grid is their product).
    #[arg(long = "sweep")]
    pub sweep: Vec<String>,
    /// Run only shard I of N of the sweep grid (0-based, e.g. a Kubernetes job completion index).
    #[arg(long, default_value = "0/1")]
    pub shard: String,
    /// Write the sweep results (.csv, .parquet or .json).
    #[arg(long)]
    pub sweep_out: Option<PathBuf>,
    /// Write this shard's results to DIR/shard-I-of-N.json, for `mcbot backtest merge DIR...`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Sweep rows shown in the text table (best total return first).
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Write the trade list (.csv or .parquet).
    #[arg(long)]
    pub trades_out: Option<PathBuf>,
    /// Write the equity curve (.csv or .parquet).
    #[arg(long)]
    pub equity_out: Option<PathBuf>,
    /// Write a PNG chart of equity and drawdown.
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

/// `mcbot backtest`: a run or sweep (the flags), or a subcommand such as `merge`.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BacktestCli {
    /// A subcommand instead of a run.
    #[command(subcommand)]
    pub action: Option<BacktestAction>,
    /// The run or sweep.
    #[command(flatten)]
    pub run: BacktestArgs,
}

/// `mcbot backtest` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BacktestAction {
    /// Combine sweep shards (`--shard I/N --out DIR`) into exactly the table an unsharded sweep prints.
    Merge(MergeArgs),
}

/// `mcbot backtest merge` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// Directories holding shard-I-of-N.json files (or the files themselves); every shard must be present.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Rows shown in the text table (best total return first).
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Write the merged results (.csv, .parquet or .json).
    #[arg(long)]
    pub sweep_out: Option<PathBuf>,
}

/// A trade with its symbol and times, as reported and exported.
#[derive(Debug, Clone, Serialize)]
pub struct TradeRow {
    /// File the trade belongs to.
    pub file: String,
    /// Entry bar's open time (ISO-8601).
    pub entry_time: String,
    /// The trade.
    #[serde(flatten)]
    pub trade: Trade,
    /// Exit bar's open time; empty while open.
    pub exit_time: String,
}

/// The result of a single (or portfolio) backtest, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct BacktestOutput {
    /// Input file names.
    pub files: Vec<String>,
    /// The first (or only) file, for scripts that read one.
    pub file: String,
    /// Timeframe used for annualising.
    pub timeframe: String,
    /// Strategy name.
    pub strategy: String,
    /// Its parameters as given.
    pub params: BTreeMap<String, String>,
    /// Engine used.
    pub engine: Engine,
    /// Fill and cost settings.
    pub config: SimConfig,
    /// The statistics (flattened: `trades`, `final_equity`, `sharpe`, ...).
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Wall time of signals + simulation + metrics (reading excluded), as the reference times itself.
    pub seconds: f64,
    /// Where the command's time went, phase by phase.
    pub timings: Timings,
    /// The trades (not printed in JSON: use --trades-out).
    #[serde(skip)]
    pub trade_rows: Vec<TradeRow>,
    /// Equity after each bar (or union time for a portfolio).
    #[serde(skip)]
    pub equity: Vec<f64>,
    /// Times of the equity points.
    #[serde(skip)]
    pub equity_time: Vec<i64>,
}

/// Where one `mcbot backtest` run spent its time, in seconds, so a slow run can be told apart from a slow kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Reading, decoding and checking the candle files.
    pub load: f64,
    /// The strategy's indicators and signal flags (for a sweep: everything per combination, run in parallel).
    pub indicators: f64,
    /// The fill engine over the bars.
    pub simulation: f64,
    /// Statistics of the equity curve and the trades.
    pub metrics: f64,
    /// Building the report (trade rows with times, equity times) and writing the requested files; printing it
    /// to stdout comes after and is not included.
    pub output: f64,
}

/// Seconds since `t`, and `t` moved to now.
fn lap(t: &mut Instant) -> f64 {
    let now = Instant::now();
    let s = now.duration_since(*t).as_secs_f64();
    *t = now;
    s
}

/// What a backtest invocation produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// One run (one file or a portfolio).
    Single(Box<BacktestOutput>),
    /// A sweep.
    Sweep(Box<SweepOutput>),
    /// The same sweep over several files.
    Sweeps(Box<MultiSweepOutput>),
}

/// One sweep grid run over several files (each read once, all combinations in parallel), as printed.
#[derive(Debug, Clone, Serialize)]
pub struct MultiSweepOutput {
    /// Files swept.
    pub file_count: usize,
    /// Combinations run over all files.
    pub combos: usize,
    /// Wall time from the first read to the last result.
    pub seconds: f64,
    /// Files read and swept per second of wall time.
    pub files_per_second: f64,
    /// Where the time went (`load` is all files read in parallel, `indicators` all sweeps).
    pub timings: Timings,
    /// Each file's sweep, in file order.
    pub files: Vec<SweepOutput>,
}

/// A sweep, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct SweepOutput {
    /// Input file.
    pub file: String,
    /// Bars.
    pub bars: usize,
    /// Timeframe.
    pub timeframe: String,
    /// Strategy.
    pub strategy: String,
    /// The shard run, as `I/N`.
    pub shard: String,
    /// The grid, shard, rows and timing.
    #[serde(flatten)]
    pub result: SweepResult,
    /// Where the command's time went (the combinations' work is under `indicators`).
    pub timings: Timings,
    /// Best row by total return.
    pub best: Option<sweep::SweepRow>,
}

fn iso(t: i64) -> String {
    // `to_rfc3339_opts` prints the same `2024-01-02T03:04:05Z` as a `%Y-%m-%dT%H:%M:%SZ` format string without
    // interpreting one per call: ten thousands of trade times are built in a few hundred microseconds.
    chrono::DateTime::from_timestamp(t, 0)
        .map_or_else(String::new, |d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn trade_rows(series: &Series, trades: impl IntoIterator<Item = Trade>) -> Vec<TradeRow> {
    let time = &series.bars.time;
    trades
        .into_iter()
        .map(|trade| TradeRow {
            file: series.name.clone(),
            entry_time: time.get(trade.entry_bar).map_or_else(String::new, |t| iso(*t)),
            exit_time: trade.exit_bar.and_then(|b| time.get(b)).map_or_else(String::new, |t| iso(*t)),
            trade,
        })
        .collect()
}

/// Loads the files with every column, several in parallel.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Series>, CommandError> {
    load_columns(paths, Columns::ALL)
}

/// Loads the files keeping the columns `needs` names (see [`data::load_columns`]), several in parallel.
pub fn load_columns(paths: &[PathBuf], needs: Columns) -> Result<Vec<Series>, CommandError> {
    use rayon::prelude::*;
    match paths {
        [one] => Ok(vec![data::load_columns(one, needs)?]),
        _ => paths.par_iter().map(|p| data::load_columns(p, needs).map_err(CommandError::from)).collect(),
    }
}

/// The columns a `backtest` run reads: the strategy's and the fills' for one file on the kernel (a single run
/// or a sweep); every column for the event engine (it rebuilds candles) and for a portfolio.
fn columns_for(args: &BacktestArgs, files: usize) -> Result<Columns, CommandError> {
    if args.engine == Engine::Event || (files > 1 && args.sweep.is_empty()) {
        return Ok(Columns::ALL);
    }
    Ok(registry::columns(&args.sim.strategy).and(args.sim.sim_config()?.columns()))
}

/// True for a path naming a candle file by its extension.
fn is_candle_file(p: &std::path::Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "csv" | "parquet" | "pq"))
}

/// The `--data` arguments as files: a directory gives its candle files (.csv, .parquet), a pattern with `*`,
/// `?` or `[` the candle files it matches, each in name order; any other path is itself. A directory or pattern
/// that names no candle file is an error (a typo must not backtest nothing).
pub fn expand_data(args: &[PathBuf]) -> Result<Vec<PathBuf>, CommandError> {
    let mut out = Vec::new();
    for arg in args {
        let text = arg.to_string_lossy();
        let mut found: Vec<PathBuf> = if arg.is_dir() {
            let entries =
                std::fs::read_dir(arg).map_err(|e| CommandError::Usage(format!("--data {}: {e}", arg.display())))?;
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file() && is_candle_file(p)).collect()
        } else if text.contains(['*', '?', '[']) {
            let paths =
                glob::glob(&text).map_err(|e| CommandError::Usage(format!("--data {text:?}: bad pattern: {e}")))?;
            paths.filter_map(Result::ok).filter(|p| p.is_file() && is_candle_file(p)).collect()
        } else {
            out.push(arg.clone());
            continue;
        };
        if found.is_empty() {
            return Err(CommandError::Usage(format!("--data {text}: no .csv or .parquet candle files there")));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// Runs one backtest over already-loaded series: the library call behind `mcbot backtest` without a sweep.
///
/// It takes the series, so their times become the equity curve's without a copy.
pub fn backtest_series(series: Vec<Series>, sim: &SimArgs, engine: Engine) -> Result<BacktestOutput, CommandError> {
    backtest_series_with(series, sim, engine, true)
}

/// [`backtest_series`]; without `keep_curve` a single kernel run's equity curve is never written out (its
/// metrics are taken from the curve's stretches) and `equity` stays empty: a run that exports no curve and
/// draws no chart saves the memory and the time of a million values.
pub fn backtest_series_with(
    series: Vec<Series>,
    sim: &SimArgs,
    engine: Engine,
    keep_curve: bool,
) -> Result<BacktestOutput, CommandError> {
    let cfg = sim.sim_config()?;
    let tf = sim.timeframe(&series)?;
    let params = sim.param_map();
    let rule = registry::build_rule(&sim.strategy, &params, tf)?;
    // Fewer bars than the warm-up would never produce a signal: an all-zero report that looks like a result.
    let warmup = rule.warmup();
    if let Some(short) = series.iter().find(|s| s.bars.time.len() <= warmup) {
        return Err(CommandError::Usage(format!(
            "{}: {} bars, but {} needs more than {warmup} bars of warm-up before its first signal",
            short.name,
            short.bars.time.len(),
            sim.strategy
        )));
    }
    let bpy = tf.bars_per_year();
    let mut timings = Timings::default();
    let mut t = Instant::now();
    let files: Vec<String> = series.iter().map(|s| s.name.clone()).collect();
    let (metrics, trade_rows, equity, equity_time) = match (series.as_slice(), engine) {
        ([one], Engine::Kernel) => {
            let signals = rule.signals(&one.bars);
            timings.indicators = lap(&mut t);
            let run = backtest::simulate_curve(&one.bars, &signals, &cfg)?;
            drop(signals);
            timings.simulation = lap(&mut t);
            let m = run.metrics(bpy);
            timings.metrics = lap(&mut t);
            let (trades, equity) = run.into_parts(keep_curve);
            let rows = trade_rows(one, trades);
            (m, rows, equity, take_time(series))
        }
        ([one], Engine::Event) => {
            let symbol = Symbol::new("BACKTEST").map_err(|e| CommandError::Usage(e.to_string()))?;
            let sim = backtest::replay(rule.as_ref(), &symbol, &data::candles(&one.bars), &cfg, None)?;
            timings.simulation = lap(&mut t);
            let m = metrics::compute(&sim.equity, sim.init_cash, &sim.trades, bpy);
            timings.metrics = lap(&mut t);
            let rows = trade_rows(one, sim.trades);
            (m, rows, sim.equity, take_time(series))
        }
        (many, Engine::Kernel) => {
            let inputs: Vec<_> = many.iter().map(|s| (s.bars.clone(), rule.signals(&s.bars))).collect();
            timings.indicators = lap(&mut t);
            let run = simulate_portfolio(&inputs, &cfg)?;
            drop(inputs);
            timings.simulation = lap(&mut t);
            let flat: Vec<Trade> = run.trades.iter().map(|(_, t)| t.clone()).collect();
            let m = metrics::compute(&run.equity, run.init_cash, &flat, bpy);
            timings.metrics = lap(&mut t);
            let rows = run.trades.into_iter().flat_map(|(i, t)| trade_rows(&many[i], [t])).collect();
            (m, rows, run.equity, run.time)
        }
        (_, Engine::Event) => {
            return Err(CommandError::Usage(
                "--engine event runs one --data file; use the kernel for a portfolio".into(),
            ));
        }
    };
    timings.output = lap(&mut t);
    let seconds = timings.indicators + timings.simulation + timings.metrics;
    Ok(BacktestOutput {
        file: files.first().cloned().unwrap_or_default(),
        files,
        timeframe: tf.to_string(),
        strategy: sim.strategy.clone(),
        params,
        engine,
        config: cfg,
        metrics,
        seconds,
        timings,
        trade_rows,
        equity,
        equity_time,
    })
}

/// The bar times of the one series, moved out (they become the equity curve's times).
fn take_time(series: Vec<Series>) -> Vec<i64> {
    series.into_iter().next().map(|s| s.bars.time).unwrap_or_default()
}

/// Refuses a series too short for every combination's warm-up (each would report zero trades and zero return,
/// which reads like a result), and warns on stderr when only some combinations are too long for it.
pub fn check_warmup(
    series: &Series,
    strategy: &str,
    combos: &[BTreeMap<String, String>],
    tf: Timeframe,
) -> Result<(), CommandError> {
    let bars = series.bars.time.len();
    let warmups: Vec<usize> =
        combos.iter().filter_map(|p| registry::build_rule(strategy, p, tf).ok()).map(|r| r.warmup()).collect();
    let too_long = warmups.iter().filter(|w| **w >= bars).count();
    match warmups.iter().min() {
        Some(&least) if least >= bars => Err(CommandError::Usage(format!(
            "{}: {bars} bars, but {strategy} needs more than {least} bars of warm-up before its first signal",
            series.name
        ))),
        _ if too_long > 0 => {
            eprintln!(
                "warning: {}: {too_long} of {} combinations need more warm-up than the {bars} bars hold and trade nothing",
                series.name,
                warmups.len()
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Runs a sweep over one loaded series.
pub fn sweep_series(
    series: &Series,
    sim: &SimArgs,
    ranges: &[String],
    shard: &str,
) -> Result<SweepOutput, CommandError> {
    let cfg = sim.sim_config()?;
    let tf = sim.timeframe(std::slice::from_ref(series))?;
    let ranges: Vec<ParamRange> = ranges.iter().map(|r| r.parse()).collect::<Result<_, _>>()?;
    let shard: Shard = shard.parse()?;
    let combos = sweep::grid(&sim.param_map(), &ranges);
    check_warmup(series, &sim.strategy, &combos, tf)?;
    let started = Instant::now();
    let result = sweep::sweep(&series.bars, &sim.strategy, &combos, shard, &cfg, tf)?;
    let timings = Timings { indicators: started.elapsed().as_secs_f64(), ..Timings::default() };
    let best =
        result.rows.iter().max_by(|a, b| a.metrics.total_return_pct.total_cmp(&b.metrics.total_return_pct)).cloned();
    Ok(SweepOutput {
        file: series.name.clone(),
        bars: series.bars.len(),
        timeframe: tf.to_string(),
        strategy: sim.strategy.clone(),
        shard: format!("{}/{}", shard.index, shard.count),
        result,
        timings,
        best,
    })
}

/// Everything `mcbot backtest` does except printing.
pub fn execute(args: &BacktestArgs) -> Result<Outcome, CommandError> {
    let started = Instant::now();
    let paths = expand_data(&args.data)?;
    if !args.sweep.is_empty() && (args.trades_out.is_some() || args.equity_out.is_some() || args.chart.is_some()) {
        return Err(CommandError::Usage("--trades-out/--equity-out/--chart describe one run, not a sweep".into()));
    }
    if !args.sweep.is_empty() && paths.len() > 1 {
        if args.sweep_out.is_some() {
            return Err(CommandError::Usage("--sweep-out writes one file's sweep: give one --data file".into()));
        }
        return sweep_files(&paths, args, started).map(|m| Outcome::Sweeps(Box::new(m)));
    }
    let series = load_columns(&paths, columns_for(args, paths.len())?)?;
    let load = started.elapsed().as_secs_f64();
    if !args.sweep.is_empty() {
        let [one] = series.as_slice() else {
            return Err(CommandError::Usage("--sweep runs over one --data file".into()));
        };
        let mut out = sweep_series(one, &args.sim, &args.sweep, &args.shard)?;
        let written = Instant::now();
        if let Some(path) = &args.sweep_out {
            export::write_sweep(path, &out)?;
        }
        out.timings.load = load;
        out.timings.output = written.elapsed().as_secs_f64();
        if let Some(dir) = &args.out {
            shard::write(dir, &out, &args.sim.param_map(), &args.sweep, &args.sim.sim_config()?)?;
        }
        return Ok(Outcome::Sweep(Box::new(out)));
    }
    if args.sweep_out.is_some() || args.out.is_some() {
        return Err(CommandError::Usage("--sweep-out and --out need --sweep".into()));
    }
    let keep_curve = args.equity_out.is_some() || args.chart.is_some();
    let mut out = backtest_series_with(series, &args.sim, args.engine, keep_curve)?;
    let written = Instant::now();
    if let Some(path) = &args.trades_out {
        export::write_trades(path, &out.trade_rows)?;
    }
    if let Some(path) = &args.equity_out {
        export::write_equity(path, &out.equity_time, &out.equity, out.config.init_cash)?;
    }
    if let Some(path) = &args.chart {
        let title = format!("{} {} on {}", out.strategy, fmt_params(&out.params), out.files.join(", "));
        chart::equity_drawdown(path, &out.equity_time, &out.equity, &title)?;
    }
    out.timings.load = load;
    out.timings.output += written.elapsed().as_secs_f64();
    Ok(Outcome::Single(Box::new(out)))
}

/// The sweep grid over every file: all files read in parallel (each once), then every file's combinations run
/// in parallel on the same thread pool.
fn sweep_files(paths: &[PathBuf], args: &BacktestArgs, started: Instant) -> Result<MultiSweepOutput, CommandError> {
    use rayon::prelude::*;
    let series = load_columns(paths, columns_for(args, paths.len())?)?;
    let load = started.elapsed().as_secs_f64();
    let swept = Instant::now();
    let files = series
        .par_iter()
        .map(|s| sweep_series(s, &args.sim, &args.sweep, &args.shard))
        .collect::<Result<Vec<_>, _>>()?;
    let timings = Timings { load, indicators: swept.elapsed().as_secs_f64(), ..Timings::default() };
    let seconds = started.elapsed().as_secs_f64();
    Ok(MultiSweepOutput {
        file_count: files.len(),
        combos: files.iter().map(|f| f.result.combos).sum(),
        seconds,
        files_per_second: if seconds > 0.0 { files.len() as f64 / seconds } else { 0.0 },
        timings,
        files,
    })
}

fn fmt_params(p: &BTreeMap<String, String>) -> String {
    if p.is_empty() {
        return "(default parameters)".into();
    }
    p.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

/// Runs `mcbot backtest` or its subcommand and prints the result: one JSON document when `json`, else tables.
pub fn run_cli(cli: &BacktestCli, json: bool) -> Result<(), CommandError> {
    match &cli.action {
        None => run(&cli.run, json),
        Some(BacktestAction::Merge(args)) => merge(args, json),
    }
}

/// `mcbot backtest merge`: the shards put back together, printed as the unsharded sweep prints.
pub fn merge(args: &MergeArgs, json: bool) -> Result<(), CommandError> {
    let out = shard::merge(&args.dirs)?;
    if let Some(path) = &args.sweep_out {
        export::write_sweep(path, &out)?;
    }
    if json {
        print_json(&out).map_err(|message| CommandError::Output { path: "stdout".into(), message })
    } else {
        print_sweep(&out, args.top);
        Ok(())
    }
}

/// Runs `mcbot backtest` and prints the report: one JSON document when `json`, else tables.
pub fn run(args: &BacktestArgs, json: bool) -> Result<(), CommandError> {
    let outcome = execute(args)?;
    let printed = match (outcome, json) {
        (Outcome::Single(o), true) => print_json(&*o),
        (Outcome::Sweep(s), true) => print_json(&*s),
        (Outcome::Single(o), false) => {
            print_single(&o);
            Ok(())
        }
        (Outcome::Sweep(s), false) => {
            print_sweep(&s, args.top);
            Ok(())
        }
        (Outcome::Sweeps(m), true) => print_json(&*m),
        (Outcome::Sweeps(m), false) => {
            print_sweeps(&m);
            Ok(())
        }
    };
    printed.map_err(|message| CommandError::Output { path: "stdout".into(), message })
}

fn print_single(o: &BacktestOutput) {
    let m = &o.metrics;
    let rows: Vec<(&str, String)> = vec![
        ("files", o.files.join(", ")),
        ("strategy", format!("{} {}", o.strategy, fmt_params(&o.params))),
        ("bars / timeframe", format!("{} / {}", m.bars, o.timeframe)),
        ("trades (closed + open)", format!("{} ({} + {})", m.trades, m.closed_trades, m.open_trades)),
        ("final equity", format!("{:.2}", m.final_equity)),
        ("total return", format!("{:.2} %", m.total_return_pct)),
        ("CAGR", format!("{:.2} %", m.cagr_pct)),
        ("Sharpe", opt(m.sharpe, 3)),
        ("Sortino", opt(m.sortino, 3)),
        ("Calmar", opt(m.calmar, 3)),
        ("max drawdown", format!("{:.2} % over {} bars", m.max_drawdown_pct, m.max_drawdown_bars)),
        ("win rate", opt(m.win_rate_pct, 1) + " %"),
        ("profit factor", opt(m.profit_factor, 3)),
        ("avg win / avg loss", format!("{} / {}", opt(m.avg_win, 2), opt(m.avg_loss, 2))),
        ("exposure", format!("{:.1} %", m.exposure_pct)),
        ("avg holding", opt(m.avg_holding_bars, 1) + " bars"),
        ("seconds", format!("{:.6}", o.seconds)),
    ];
    println!("{}", table(&["metric", "value"], rows.into_iter().map(|(k, v)| vec![k.to_owned(), v])));
    let exits = |r: ExitReason| o.trade_rows.iter().filter(|t| t.trade.exit == r).count();
    let stops = exits(ExitReason::StopLoss) + exits(ExitReason::TrailingStop) + exits(ExitReason::TakeProfit);
    if stops > 0 {
        println!("exits by stop/take-profit: {stops} of {}", o.trade_rows.len());
    }
}

fn print_sweeps(m: &MultiSweepOutput) {
    let body = m.files.iter().map(|f| {
        let best = f.best.as_ref();
        vec![
            f.file.clone(),
            f.bars.to_string(),
            f.result.combos.to_string(),
            best.map_or_else(|| "-".into(), |b| fmt_params(&b.params)),
            best.map_or_else(|| "-".into(), |b| format!("{:.2}", b.metrics.total_return_pct)),
            best.map_or_else(|| "-".into(), |b| opt(b.metrics.sharpe, 3)),
        ]
    });
    println!("{}", table(&["file", "bars", "combinations", "best", "return %", "Sharpe"], body));
    println!(
        "{} files, {} combinations in {:.3} s ({:.1} files/s; reading {:.3} s)",
        m.file_count, m.combos, m.seconds, m.files_per_second, m.timings.load
    );
}

fn print_sweep(s: &SweepOutput, top: usize) {
    let mut rows: Vec<&sweep::SweepRow> = s.result.rows.iter().collect();
    rows.sort_by(|a, b| b.metrics.total_return_pct.total_cmp(&a.metrics.total_return_pct));
    let names: Vec<String> = rows.first().map(|r| r.params.keys().cloned().collect()).unwrap_or_default();
    let mut header: Vec<&str> = names.iter().map(String::as_str).collect();
    header.extend(["trades", "return %", "Sharpe", "max DD %", "win %", "PF"]);
    let body = rows.iter().take(top).map(|r| {
        let m = &r.metrics;
        let mut v: Vec<String> = names.iter().map(|n| r.params.get(n).cloned().unwrap_or_default()).collect();
        v.extend([
            m.trades.to_string(),
            format!("{:.2}", m.total_return_pct),
            opt(m.sharpe, 3),
            format!("{:.2}", m.max_drawdown_pct),
            opt(m.win_rate_pct, 1),
            opt(m.profit_factor, 3),
        ]);
        v
    });
    println!("{}", table(&header, body));
    println!(
        "{}: {} combinations run (shard {}, grid {}, {} skipped{}) in {:.3} s",
        s.file,
        s.result.combos,
        s.shard,
        s.result.grid_size,
        s.result.skipped,
        s.result.first_skip_reason.as_ref().map_or_else(String::new, |r| format!(": {r}")),
        s.result.seconds
    );
}
