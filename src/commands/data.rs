//! `mcbot data download` and `mcbot data import`: historical candles into the Parquet store
//! ([`crate::market_data`]), with a progress bar for people and one JSON document for scripts.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use mcbot_stages::SystemClock;
use mcbot_stages::domain::{Symbol, Timeframe};
use mcbot_stages::ports::Exchange;
use serde_json::json;

use crate::market_data::{
    CandleStore, DownloadOptions, Layout, MarketDataError, SeriesReport, download_series, import_csv,
};
use crate::output::{print_json, table};

/// `mcbot data ...`
#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DataCommand,
}

/// Data subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Download closed candles from an exchange into the Parquet store (resumes after the last stored bar).
    Download(DownloadArgs),
    /// Import a candle CSV (`timestamp,open,high,low,close,volume`) into the Parquet store.
    Import(ImportArgs),
    /// Rewrite candle files of older versions (prices as text) with DECIMAL columns, once; typed files are left
    /// alone. Takes the store directory (searched recursively) or single files.
    Migrate(MigrateArgs),
}

/// `mcbot data migrate` arguments.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Store directories (searched recursively for .parquet files) or single files.
    #[arg(default_value = "data/candles")]
    pub paths: Vec<PathBuf>,
}

/// What `mcbot data migrate` did to one file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MigrateReport {
    /// The file.
    pub file: PathBuf,
    /// Its layout before.
    pub was: Layout,
    /// Bars rewritten (0 when the file needed nothing).
    pub rewritten: usize,
}

/// `mcbot data download` arguments.
#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    /// Exchange to download from (binance, upbit, sim); default: the configured one.
    #[arg(long)]
    pub exchange: Option<String>,
    /// Symbols, comma-separated, as the exchange names them (BTCUSDT, KRW-BTC).
    #[arg(long, value_delimiter = ',', required = true, value_parser = parse_symbol)]
    pub symbols: Vec<Symbol>,
    /// Bar length: 1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h, 1d.
    #[arg(long)]
    pub timeframe: Timeframe,
    /// First bar (UTC): 2024-01-01 or 2024-01-01T00:00:00Z. Optional when the store already holds the series.
    #[arg(long, value_parser = parse_time)]
    pub from: Option<DateTime<Utc>>,
    /// End of the range (UTC, exclusive); default: now (closed bars only).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<DateTime<Utc>>,
    /// Store directory.
    #[arg(long, default_value = "data/candles")]
    pub dir: PathBuf,
    /// Bars per request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub page_size: u32,
}

/// `mcbot data import` arguments.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The CSV file.
    pub file: PathBuf,
    /// Symbol; default: from a `SYMBOL-TF.csv` file name (`BTC_USD-1h.csv` gives BTC_USD).
    #[arg(long, value_parser = parse_symbol)]
    pub symbol: Option<Symbol>,
    /// Bar length; default: from the file name.
    #[arg(long)]
    pub timeframe: Option<Timeframe>,
    /// Exchange (sub-directory of the store) the data belongs to.
    #[arg(long, default_value = "csv")]
    pub exchange: String,
    /// Store directory.
    #[arg(long, default_value = "data/candles")]
    pub dir: PathBuf,
}

impl DataArgs {
    /// The exchange the command needs built, if any: `Some(None)` for "the configured one", `None` when the
    /// command needs no exchange (import).
    pub fn exchange_wanted(&self) -> Option<Option<&str>> {
        match &self.command {
            DataCommand::Download(d) => Some(d.exchange.as_deref()),
            DataCommand::Import(_) | DataCommand::Migrate(_) => None,
        }
    }
}

/// Why a data command failed; each variant knows its exit code.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Wrong or missing arguments (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Reading, fetching or writing failed (exit 1; exit 2 for an unusable input file or name).
    #[error(transparent)]
    MarketData(#[from] MarketDataError),
    /// Printing the result failed (exit 1).
    #[error("output: {0}")]
    Output(String),
}

impl DataError {
    /// 2 for usage errors and unusable input files, 1 for runtime failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            DataError::Usage(_) | DataError::MarketData(MarketDataError::Csv(_) | MarketDataError::ExchangeName(_)) => {
                2
            }
            _ => 1,
        }
    }
}

fn parse_symbol(s: &str) -> Result<Symbol, String> {
    Symbol::new(s).map_err(|e| e.to_string())
}

/// `2024-01-01`, `2024-01-01T00:00:00Z` (any RFC 3339 offset) or `2024-01-01 00:00:00` (UTC).
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_utc());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
        return Ok(t.and_utc());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{s:?} is not a UTC date (2024-01-01) or time (2024-01-01T00:00:00Z)"))
}

/// `BTC_USD-1h.csv` → (`BTC_USD`, `1h`).
fn from_file_name(path: &Path) -> (Option<Symbol>, Option<Timeframe>) {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    match stem.rsplit_once('-') {
        Some((sym, tf)) => (Symbol::new(sym).ok(), tf.parse().ok()),
        None => (Symbol::new(stem).ok(), None),
    }
}

fn progress_bar(json: bool) -> ProgressBar {
    if json || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} bars ({eta})")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(0).with_style(style)
}

/// Runs `mcbot data ...`. `exchange` is the adapter built for [`DataArgs::exchange_wanted`] (unused by import).
pub async fn run(args: &DataArgs, exchange: Option<Arc<dyn Exchange>>, json: bool) -> Result<(), DataError> {
    let reports = match &args.command {
        DataCommand::Download(d) => download(d, exchange, json).await?,
        DataCommand::Import(i) => vec![import(i)?],
        DataCommand::Migrate(m) => return print_migrated(&migrate(&m.paths)?, json),
    };
    print(&reports, json)
}

async fn download(
    d: &DownloadArgs,
    exchange: Option<Arc<dyn Exchange>>,
    json: bool,
) -> Result<Vec<SeriesReport>, DataError> {
    let exchange = exchange.ok_or_else(|| DataError::Usage("data download needs an exchange (--exchange)".into()))?;
    if let (Some(from), Some(to)) = (d.from, d.to)
        && from >= to
    {
        return Err(DataError::Usage(format!("--from {from} must be before --to {to}")));
    }
    let store = CandleStore::new(&d.dir);
    for s in &d.symbols {
        if d.from.is_none() && store.read(exchange.name(), s, d.timeframe)?.is_empty() {
            return Err(DataError::Usage(format!("--from is required: nothing stored yet for {s} {}", d.timeframe)));
        }
    }
    let opts = DownloadOptions {
        from: d.from,
        to: d.to,
        page_size: usize::try_from(d.page_size).unwrap_or(1000),
        ..DownloadOptions::default()
    };
    let mut reports = Vec::new();
    for s in &d.symbols {
        let bar = progress_bar(json);
        let res = download_series(exchange.as_ref(), &store, s, d.timeframe, &opts, &SystemClock, &bar).await;
        bar.finish_and_clear();
        match res {
            Ok(r) => reports.push(r),
            Err(e) => {
                // Show what did complete before failing; the next run resumes the rest.
                if !reports.is_empty() {
                    print(&reports, json)?;
                }
                return Err(e.into());
            }
        }
    }
    Ok(reports)
}

fn import(i: &ImportArgs) -> Result<SeriesReport, DataError> {
    let (sym, tf) = from_file_name(&i.file);
    let symbol = i.symbol.clone().or(sym).ok_or_else(|| {
        DataError::Usage(format!("--symbol is required: cannot take it from the file name {}", i.file.display()))
    })?;
    let tf = i.timeframe.or(tf).ok_or_else(|| {
        DataError::Usage(format!("--timeframe is required: cannot take it from the file name {}", i.file.display()))
    })?;
    let store = CandleStore::new(&i.dir);
    Ok(import_csv(&store, &i.exchange, &i.file, &symbol, tf)?)
}

/// Every `.parquet` file under `paths` (directories recursively, in name order).
fn parquet_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            let entries = std::fs::read_dir(&p).map_err(|source| MarketDataError::Io { path: p.clone(), source })?;
            let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            children.sort();
            stack.extend(children.into_iter().rev());
        } else if p.extension().is_some_and(|e| e == "parquet") {
            out.push(p);
        } else if !p.exists() {
            return Err(DataError::Usage(format!("{}: no such file or directory", p.display())));
        }
    }
    Ok(out)
}

/// Rewrites each text-typed candle file under `paths` in the DECIMAL layout.
pub fn migrate(paths: &[PathBuf]) -> Result<Vec<MigrateReport>, DataError> {
    let mut reports = Vec::new();
    for file in parquet_files(paths)? {
        let was = crate::market_data::layout(&file)?;
        let rewritten = crate::market_data::migrate_file(&file)?.unwrap_or(0);
        reports.push(MigrateReport { file, was, rewritten });
    }
    Ok(reports)
}

fn print_migrated(reports: &[MigrateReport], json: bool) -> Result<(), DataError> {
    let migrated = reports.iter().filter(|r| r.was == Layout::Text).count();
    if json {
        return print_json(&json!({ "files": reports, "migrated": migrated })).map_err(DataError::Output);
    }
    let rows = reports.iter().map(|r| {
        let did = if r.was == Layout::Text { format!("rewritten ({} bars)", r.rewritten) } else { "unchanged".into() };
        vec![r.file.display().to_string(), format!("{:?}", r.was).to_lowercase(), did]
    });
    println!("{}", table(&["file", "layout", "migration"], rows));
    println!("{migrated} of {} files rewritten with DECIMAL columns", reports.len());
    Ok(())
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

fn print(reports: &[SeriesReport], json: bool) -> Result<(), DataError> {
    if json {
        return print_json(&json!({ "series": reports })).map_err(DataError::Output);
    }
    let header = [
        "series",
        "file",
        "fetched",
        "added",
        "stored",
        "first",
        "last",
        "gaps (bars)",
        "dupes",
        "bad OHLC",
        "off grid",
    ];
    let rows = reports.iter().map(|r| {
        let q = &r.quality;
        vec![
            format!("{} {} {}", r.exchange, r.symbol, r.timeframe),
            r.file.display().to_string(),
            r.fetched.to_string(),
            r.added.to_string(),
            r.stored.to_string(),
            time(r.first),
            time(r.last),
            format!("{} ({})", q.gaps.len(), q.missing_bars),
            q.duplicates.to_string(),
            q.insane.len().to_string(),
            q.misaligned.len().to_string(),
        ]
    });
    println!("{}", table(&header, rows));
    for r in reports.iter().filter(|r| !r.quality.gaps.is_empty()) {
        let shown: Vec<String> = r
            .quality
            .gaps
            .iter()
            .take(5)
            .map(|g| format!("{} .. {} ({} bars)", time(Some(g.from)), time(Some(g.until)), g.missing))
            .collect();
        let more = r.quality.gaps.len().saturating_sub(shown.len());
        let tail = if more > 0 { format!(", and {more} more") } else { String::new() };
        println!("{} gaps: {}{tail}", r.symbol, shown.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_times_parse() {
        let (s, tf) = from_file_name(Path::new("/x/BTC_USD-1h.csv"));
        assert_eq!((s.map(|s| s.to_string()), tf.map(|t| t.to_string())), (Some("BTC_USD".into()), Some("1h".into())));
        let (s, tf) = from_file_name(Path::new("KRW-BTC-5m.csv"));
        assert_eq!((s.map(|s| s.to_string()), tf.map(|t| t.minutes())), (Some("KRW-BTC".into()), Some(5)));
        assert_eq!(from_file_name(Path::new("prices.csv")).1, None);
        assert_eq!(parse_time("2024-01-02").unwrap().to_rfc3339(), "2024-01-02T00:00:00+00:00");
        assert_eq!(parse_time("2024-01-02T09:00:00+09:00").unwrap().to_rfc3339(), "2024-01-02T00:00:00+00:00");
        assert_eq!(parse_time("2024-01-02 03:04:05").unwrap().to_rfc3339(), "2024-01-02T03:04:05+00:00");
        assert!(parse_time("yesterday").is_err());
        assert_eq!(DataError::Usage("x".into()).exit_code(), 2);
    }
}
