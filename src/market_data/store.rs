//! The Parquet candle store: one file per (exchange, symbol, timeframe). A write merges new bars into what is
//! stored and replaces the file atomically (write to a temporary file, then rename), so an interrupted download
//! never leaves a half-written file and the next run resumes after the last stored bar.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use mcbot_stages::domain::{Candle, Decimal, Symbol, Timeframe};
use polars::prelude::*;

use super::MarketDataError;

/// Column names, in file order.
pub const COLUMNS: [&str; 6] = ["timestamp", "open", "high", "low", "close", "volume"];

/// The store rooted at a directory.
#[derive(Debug, Clone)]
pub struct CandleStore {
    dir: PathBuf,
}

/// What a merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Bars newly written.
    pub added: usize,
    /// Bars in the file afterwards.
    pub stored: usize,
}

fn parquet_err(path: &Path, e: impl std::fmt::Display) -> MarketDataError {
    MarketDataError::Parquet { path: path.to_path_buf(), message: e.to_string() }
}

fn corrupt(path: &Path, message: impl Into<String>) -> MarketDataError {
    MarketDataError::Corrupt { path: path.to_path_buf(), message: message.into() }
}

impl CandleStore {
    /// A store under `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<exchange>/<SYMBOL>-<tf>.parquet`. Symbols are already path-safe (A-Z, 0-9, `-`, `_`); exchange names
    /// are checked here.
    pub fn path(&self, exchange: &str, symbol: &Symbol, tf: Timeframe) -> Result<PathBuf, MarketDataError> {
        let ok = !exchange.is_empty()
            && exchange.len() <= 32
            && exchange.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(MarketDataError::ExchangeName(exchange.to_owned()));
        }
        Ok(self.dir.join(exchange).join(format!("{symbol}-{tf}.parquet")))
    }

    /// The stored bars, ascending; empty when there is no file yet.
    pub fn read(&self, exchange: &str, symbol: &Symbol, tf: Timeframe) -> Result<Vec<Candle>, MarketDataError> {
        let path = self.path(exchange, symbol, tf)?;
        if !path.exists() {
            return Ok(Vec::new());
        }
        read_file(&path)
    }

    /// Merges `bars` (already screened: sane, aligned, unique) into the stored series and rewrites the file. Bars
    /// whose open time is already stored are skipped: the store never holds two bars for one time.
    pub fn merge(
        &self,
        exchange: &str,
        symbol: &Symbol,
        tf: Timeframe,
        bars: &[Candle],
    ) -> Result<MergeOutcome, MarketDataError> {
        let path = self.path(exchange, symbol, tf)?;
        let mut all = if path.exists() { read_file(&path)? } else { Vec::new() };
        let held: BTreeSet<DateTime<Utc>> = all.iter().map(|c| c.open_time).collect();
        let before = all.len();
        let mut fresh: Vec<Candle> = bars.iter().filter(|c| !held.contains(&c.open_time)).cloned().collect();
        fresh.sort_by_key(|c| c.open_time);
        fresh.dedup_by_key(|c| c.open_time);
        if fresh.is_empty() {
            return Ok(MergeOutcome { added: 0, stored: before });
        }
        all.extend(fresh);
        all.sort_by_key(|c| c.open_time);
        write_file(&path, &all)?;
        Ok(MergeOutcome { added: all.len() - before, stored: all.len() })
    }
}

fn text(values: impl Iterator<Item = Decimal>) -> Vec<String> {
    values.map(|d| d.normalize().to_string()).collect()
}

/// Writes the whole series to `path` through a temporary file and a rename.
fn write_file(path: &Path, bars: &[Candle]) -> Result<(), MarketDataError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| MarketDataError::Io { path: dir.to_path_buf(), source })?;
    let millis: Vec<i64> = bars.iter().map(|c| c.open_time.timestamp_millis()).collect();
    // Plain INT64 milliseconds: a polars Datetime column needs the `dtype-datetime` feature, not built here.
    let ts = Column::new("timestamp".into(), millis);
    let col = |name: &str, v: Vec<String>| Column::new(name.into(), v);
    let mut df = DataFrame::new(
        bars.len(),
        vec![
            ts,
            col("open", text(bars.iter().map(|c| c.open))),
            col("high", text(bars.iter().map(|c| c.high))),
            col("low", text(bars.iter().map(|c| c.low))),
            col("close", text(bars.iter().map(|c| c.close))),
            col("volume", text(bars.iter().map(|c| c.volume))),
        ],
    )
    .map_err(|e| parquet_err(path, e))?;
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp).map_err(|source| MarketDataError::Io { path: tmp.clone(), source })?;
    ParquetWriter::new(file).finish(&mut df).map_err(|e| parquet_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|source| MarketDataError::Io { path: path.to_path_buf(), source })
}

/// Reads a store file back into exact candles, checking the schema.
pub fn read_file(path: &Path) -> Result<Vec<Candle>, MarketDataError> {
    let file = std::fs::File::open(path).map_err(|source| MarketDataError::Io { path: path.to_path_buf(), source })?;
    let df = ParquetReader::new(file).finish().map_err(|e| parquet_err(path, e))?;
    let column = |name: &str| df.column(name).map_err(|_| corrupt(path, format!("missing column {name:?}")));
    let ts = column("timestamp")?;
    let millis: Vec<i64> = match ts.dtype() {
        DataType::Datetime(TimeUnit::Milliseconds, _) | DataType::Int64 => {
            let phys = ts.cast(&DataType::Int64).map_err(|e| parquet_err(path, e))?;
            let ca = phys.i64().map_err(|e| parquet_err(path, e))?;
            ca.iter()
                .enumerate()
                .map(|(i, v)| v.ok_or_else(|| corrupt(path, format!("row {i}: empty timestamp"))))
                .collect::<Result<_, _>>()?
        }
        other => return Err(corrupt(path, format!("timestamp has type {other}, expected Int64 milliseconds"))),
    };
    let mut cols: Vec<Vec<Decimal>> = Vec::with_capacity(5);
    for name in &COLUMNS[1..] {
        let c = column(name)?;
        let ca = c.str().map_err(|_| corrupt(path, format!("{name} has type {}, expected String", c.dtype())))?;
        let values = ca
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.and_then(|s| Decimal::from_str(s).ok())
                    .ok_or_else(|| corrupt(path, format!("row {i}: {name} {v:?} is not a decimal")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        cols.push(values);
    }
    let mut out = Vec::with_capacity(millis.len());
    for (i, ms) in millis.iter().enumerate() {
        let open_time =
            DateTime::from_timestamp_millis(*ms).ok_or_else(|| corrupt(path, format!("row {i}: time {ms}")))?;
        out.push(Candle {
            open_time,
            open: cols[0][i],
            high: cols[1][i],
            low: cols[2][i],
            close: cols[3][i],
            volume: cols[4][i],
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn bar(h: i64, close: Decimal) -> Candle {
        Candle {
            open_time: DateTime::from_timestamp(1_704_067_200 + h * 3600, 0).unwrap(),
            open: dec!(0.00005352),
            high: dec!(123456789012.123456789),
            low: dec!(0.00000001),
            close,
            volume: dec!(100380.64502838),
        }
    }

    #[test]
    fn round_trips_exactly_and_merges_without_duplicates() {
        let d = tempfile::tempdir().unwrap();
        let store = CandleStore::new(d.path());
        let s = Symbol::new("KRW-BTC").unwrap();
        let tf: Timeframe = "1h".parse().unwrap();
        assert!(store.read("upbit", &s, tf).unwrap().is_empty());
        let first = vec![bar(0, dec!(1.5)), bar(1, dec!(2.25))];
        assert_eq!(store.merge("upbit", &s, tf, &first).unwrap(), MergeOutcome { added: 2, stored: 2 });
        let again = vec![bar(1, dec!(9)), bar(2, dec!(3))];
        assert_eq!(store.merge("upbit", &s, tf, &again).unwrap(), MergeOutcome { added: 1, stored: 3 });
        let back = store.read("upbit", &s, tf).unwrap();
        assert_eq!(back, vec![bar(0, dec!(1.5)), bar(1, dec!(2.25)), bar(2, dec!(3))], "the stored bar wins");
        assert_eq!(back[0].high.to_string(), "123456789012.123456789");
        let path = store.path("upbit", &s, tf).unwrap();
        assert!(path.ends_with("upbit/KRW-BTC-1h.parquet"));
        assert!(!path.with_extension("parquet.tmp").exists());
        assert!(store.path("../etc", &s, tf).is_err());
    }
}
