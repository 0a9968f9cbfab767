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
//! | column      | Parquet / polars type              | meaning                                        |
//! |-------------|------------------------------------|------------------------------------------------|
//! | `timestamp` | `Int64`                            | bar **open** time, milliseconds since the Unix epoch (UTC) |
//! | `open`      | `String` (UTF-8)                   | exact decimal text, no exponent (`80050000`)   |
//! | `high`      | `String`                           | "                                              |
//! | `low`       | `String`                           | "                                              |
//! | `close`     | `String`                           | "                                              |
//! | `volume`    | `String`                           | base volume, exact decimal text                |
//!
//! The backtest loader reads integer timestamps above 10^11 as milliseconds. (A `Datetime(ms, UTC)` column
//! would need polars' `dtype-datetime` feature; the reader here accepts one already, should it be enabled.)
//! Rows are strictly ascending by `timestamp`, unique, every bar OHLC-sane and on its timeframe's UTC grid.
//! Gaps are kept, never filled: a missing bar means the exchange had no trades (or no data) then.
//!
//! **Why prices are strings, not a Decimal column:** a Parquet DECIMAL column has one fixed scale per file, but
//! exact prices need different scales per market and over time (KRW prices are whole won, BTC-quoted prices
//! carry 8 or more decimals, volumes up to 8); any fixed scale either rounds or overflows the 38 digits. Decimal
//! text is exact for every value, needs no scale decision, reads back into `rust_decimal::Decimal` losslessly
//! and is understood by every Parquet reader (polars, pandas, DuckDB: `CAST(open AS DECIMAL(38,10))`). The
//! backtest loader already accepts decimal-text price columns. Dictionary encoding and compression keep the
//! size close to a numeric column.

mod checks;
mod download;
mod import;
mod store;

pub use checks::{Gap, Quality, check_series};
pub use download::{DownloadOptions, download_series};
pub use import::import_csv;
pub use store::{CandleStore, MergeOutcome};

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
