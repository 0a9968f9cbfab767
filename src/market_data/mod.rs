//! Historical candles on disk: a Parquet store with one file per (exchange, symbol, timeframe), filled by
//! `mcbot data download` from any [`Exchange`](mcbot_stages::ports::Exchange) and by `mcbot data import` from
//! candle CSVs (`timestamp,open,high,low,close,volume`), with every series checked for gaps, duplicates and
//! OHLC sanity.
//!
//! # File layout and schema (read by the backtest loader too)
//!
//! `<dir>/<exchange>/<SYMBOL>-<timeframe>.parquet`, e.g. `data/candles/upbit/KRW-BTC-1h.parquet`. The `-1h`
//! suffix is how the backtest loader infers the bar length from a file name.
//!
//! | column      | Parquet type (polars type)                         | meaning                                 |
//! |-------------|----------------------------------------------------|-----------------------------------------|
//! | `timestamp` | INT64 TIMESTAMP(MILLIS, UTC) (`Datetime(ms, UTC)`) | bar **open** time                       |
//! | `open`      | DECIMAL(18, s) as INT64 (`Decimal(18, s)`)         | exact price; `s` = the instrument's scale |
//! | `high`      | "                                                  | "                                       |
//! | `low`       | "                                                  | "                                       |
//! | `close`     | "                                                  | "                                       |
//! | `volume`    | DECIMAL(18, v) as INT64                            | base volume at its own scale `v`        |
//!
//! The price scale `s` is the most decimals any price of the series has (one scale for open, high, low and
//! close: the tick's decimals), the volume's likewise; a column whose mantissas need more than 18 digits is
//! written DECIMAL(38, s) (16-byte fixed-length). Pages are LZ4 (raw) compressed, row groups hold 262 144 bars,
//! and the footer's key `mcbot.candles` names the layout (`decimal-v2`). Rows are strictly ascending by
//! `timestamp`, unique, every bar OHLC-sane and on its timeframe's UTC grid. Gaps are kept, never filled: a
//! missing bar means the exchange had no trades (or no data) then.
//!
//! **Why DECIMAL, not f64 or text:** the store feeds both the backtest and the live pipeline, and money is exact
//! (`rust_decimal::Decimal`). A DECIMAL column keeps every stored price exactly, is as small and as fast to scan
//! as an f64 column (an INT64 per value, no parsing), and any Parquet reader (polars, pandas, DuckDB) sees a
//! decimal. The backtest turns a mantissa into the f64 that parsing the price's text gives with one IEEE
//! division (exact when the mantissa is below 2^53), so it sees bit for bit the numbers of the CSV it was
//! imported from. An f64 column would do for the backtest alone, but only with a proof per file that every value
//! round-trips, and the live side would still have to re-derive decimals from floats.
//!
//! Files of older versions kept prices as decimal text; they are still read (the backtest warns) and
//! `mcbot data migrate` rewrites them once.

mod checks;
mod download;
mod import;
mod store;

pub use checks::{Gap, Quality, check_series};
pub use download::{DownloadOptions, download_series};
pub use import::import_csv;
pub use store::{CandleStore, FORMAT_KEY, FORMAT_TYPED, Layout, MergeOutcome, layout, migrate_file};

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use mcbot_stages::ports::ExchangeError;
use serde::Serialize;

use crate::candles_csv::CandleCsvError;

/// Why a candle series could not be read, fetched or written.
#[derive(Debug, thiserror::Error)]
pub enum MarketDataError {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Parquet encoding or decoding failed.
    #[error("{path}: parquet: {message}")]
    Parquet {
        /// File.
        path: PathBuf,
        /// polars' message.
        message: String,
    },
    /// A stored file does not follow the schema (not written by mcbot, or damaged).
    #[error("{path}: not an mcbot candle file: {message}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The exchange failed; what was fetched before is already stored, so the download can be resumed.
    #[error("{symbol}: exchange error after {stored} bars stored: {source}")]
    Exchange {
        /// Symbol being downloaded.
        symbol: String,
        /// Bars stored for it so far.
        stored: usize,
        /// Cause.
        source: ExchangeError,
    },
    /// The CSV to import is unusable.
    #[error(transparent)]
    Csv(#[from] CandleCsvError),
    /// A name that cannot be used in a path (exchange names are lower-case letters, digits, `-` and `_`).
    #[error("invalid exchange name {0:?}: use lower-case letters, digits, '-' or '_'")]
    ExchangeName(String),
}

/// What one download or import did to one series, and the state of the stored series afterwards.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesReport {
    /// Exchange name (the store's sub-directory).
    pub exchange: String,
    /// Symbol.
    pub symbol: String,
    /// Timeframe, e.g. `1h`.
    pub timeframe: String,
    /// The Parquet file.
    pub file: PathBuf,
    /// Bars received in the requested range.
    pub fetched: usize,
    /// Bars newly written.
    pub added: usize,
    /// Bars in the file now.
    pub stored: usize,
    /// Open time of the first stored bar.
    pub first: Option<DateTime<Utc>>,
    /// Open time of the last stored bar.
    pub last: Option<DateTime<Utc>>,
    /// Problems found in what was received and in the stored series.
    pub quality: Quality,
}
