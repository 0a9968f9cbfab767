//! The Parquet candle store: one file per (exchange, symbol, timeframe). A write merges new bars into what is
//! stored and replaces the file atomically (write to a temporary file, then rename), so an interrupted download
//! never leaves a half-written file and the next run resumes after the last stored bar.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use mcbot_stages::domain::{Candle, Decimal, Symbol, Timeframe};
use polars::prelude::*;
use serde::Serialize;

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

/// Footer key naming the layout, so a reader can tell a typed file from the text-typed files of older versions.
pub const FORMAT_KEY: &str = "mcbot.candles";
/// The layout written now: DECIMAL prices and volumes, a UTC millisecond timestamp.
pub const FORMAT_TYPED: &str = "decimal-v2";
/// Rows per row group: four groups for a million bars, so a scan decodes in parallel yet each page run is long.
pub const ROW_GROUP_ROWS: usize = 262_144;

/// How a stored file keeps its prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Parquet DECIMAL columns (the current layout).
    Decimal,
    /// Decimal text (written by older versions): readable, slow to scan; `mcbot data migrate` rewrites it.
    Text,
    /// Floating point or integer prices (written by another tool): readable by the backtest, not exact money.
    Other,
}

/// The layout of a candle Parquet file, from its schema alone (no data is read).
pub fn layout(path: &Path) -> Result<Layout, MarketDataError> {
    let file = std::fs::File::open(path).map_err(|source| MarketDataError::Io { path: path.to_path_buf(), source })?;
    let schema = ParquetReader::new(file).schema().map_err(|e| parquet_err(path, e))?;
    let open = schema.get("open").ok_or_else(|| corrupt(path, "missing column \"open\""))?;
    Ok(match &open.dtype {
        ArrowDataType::Decimal(..) | ArrowDataType::Decimal32(..) | ArrowDataType::Decimal64(..) => Layout::Decimal,
        ArrowDataType::Utf8 | ArrowDataType::LargeUtf8 | ArrowDataType::Utf8View => Layout::Text,
        _ => Layout::Other,
    })
}

/// Rewrites a text-typed store file in the DECIMAL layout (atomically); returns the bars rewritten, or `None`
/// when the file needs nothing.
pub fn migrate_file(path: &Path) -> Result<Option<usize>, MarketDataError> {
    if layout(path)? != Layout::Text {
        return Ok(None);
    }
    let bars = read_file(path)?;
    write_file(path, &bars)?;
    Ok(Some(bars.len()))
}

/// Mantissas of `values` at one common `scale`, with the precision the column needs (18 digits fit Parquet
/// INT64, else 38 in a 16-byte fixed-length array).
fn at_scale(path: &Path, name: &str, values: &[Decimal], scale: u32) -> Result<(Vec<i128>, usize), MarketDataError> {
    const DIGITS_38: i128 = 10i128.pow(38);
    let mut max = 0i128;
    let mut out = Vec::with_capacity(values.len());
    for d in values {
        let m = d.mantissa();
        let factor = 10i128.checked_pow(scale - d.scale());
        let v = factor.and_then(|f| m.checked_mul(f)).filter(|v| v.abs() < DIGITS_38).ok_or_else(|| {
            corrupt(path, format!("{name} {d} does not fit DECIMAL(38, {scale}) beside the column's other values"))
        })?;
        max = max.max(v.abs());
        out.push(v);
    }
    Ok((out, if max < 10i128.pow(18) { 18 } else { 38 }))
}

/// The scale a column needs: the most decimals any of its values has (trailing zeros dropped).
fn scale_of(values: &[Decimal]) -> u32 {
    values.iter().map(|d| d.normalize().scale()).max().unwrap_or(0)
}

/// Writes the whole series to `path` through a temporary file and a rename: prices as DECIMAL at the instrument's
/// scale (the most decimals any price has; one scale for open, high, low and close), volume at its own, the open
/// time as a UTC millisecond timestamp. Uncompressed-fast LZ4 pages and large row groups, for scans.
fn write_file(path: &Path, bars: &[Candle]) -> Result<(), MarketDataError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| MarketDataError::Io { path: dir.to_path_buf(), source })?;
    let millis: Vec<i64> = bars.iter().map(|c| c.open_time.timestamp_millis()).collect();
    let ts = Int64Chunked::from_vec("timestamp".into(), millis)
        .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
        .into_series()
        .into_column();
    let pick = |f: fn(&Candle) -> Decimal| bars.iter().map(f).collect::<Vec<Decimal>>();
    let prices = [pick(|c| c.open), pick(|c| c.high), pick(|c| c.low), pick(|c| c.close)];
    let volume = pick(|c| c.volume);
    let price_scale = prices.iter().map(|p| scale_of(p)).max().unwrap_or(0);
    let mut columns = vec![ts];
    for (name, values, scale) in COLUMNS[1..]
        .iter()
        .zip(prices.iter().chain([&volume]))
        .zip([price_scale, price_scale, price_scale, price_scale, scale_of(&volume)])
        .map(|((n, v), s)| (n, v, s))
    {
        let (mantissas, precision) = at_scale(path, name, values, scale)?;
        let col = Int128Chunked::from_vec((*name).into(), mantissas)
            .into_decimal(precision, scale as usize)
            .map_err(|e| parquet_err(path, e))?;
        columns.push(col.into_series().into_column());
    }
    let mut df = DataFrame::new(bars.len(), columns).map_err(|e| parquet_err(path, e))?;
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp).map_err(|source| MarketDataError::Io { path: tmp.clone(), source })?;
    let meta = KeyValueMetadata::from_static(vec![(FORMAT_KEY.to_owned(), FORMAT_TYPED.to_owned())]);
    ParquetWriter::new(file)
        .with_compression(ParquetCompression::Lz4Raw)
        .with_row_group_size(Some(ROW_GROUP_ROWS))
        .with_key_value_metadata(Some(meta))
        .finish(&mut df)
        .map_err(|e| parquet_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|source| MarketDataError::Io { path: path.to_path_buf(), source })
}

/// A stored price column back as exact decimals: DECIMAL (mantissa and scale, no rounding) or, from files of
/// older versions, decimal text.
fn decimals(path: &Path, c: &Column, name: &str) -> Result<Vec<Decimal>, MarketDataError> {
    let bad = |i: usize, what: String| corrupt(path, format!("row {i}: {name} {what} is not a decimal"));
    match c.dtype() {
        DataType::Decimal(_, scale) => {
            let scale = u32::try_from(*scale).unwrap_or(u32::MAX);
            let ca = c.decimal().map_err(|e| parquet_err(path, e))?;
            ca.physical()
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.and_then(|m| Decimal::try_from_i128_with_scale(m, scale).ok())
                        .ok_or_else(|| bad(i, format!("{v:?} (scale {scale})")))
                })
                .collect()
        }
        DataType::String => c
            .str()
            .map_err(|e| parquet_err(path, e))?
            .iter()
            .enumerate()
            .map(|(i, v)| v.and_then(|s| Decimal::from_str(s).ok()).ok_or_else(|| bad(i, format!("{v:?}"))))
            .collect(),
        other => Err(corrupt(path, format!("{name} has type {other}, expected Decimal (or String)"))),
    }
}

/// Reads a store file back into exact candles, checking the schema. Text-typed files of older versions are read
/// too (`mcbot data migrate` rewrites them).
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
        cols.push(decimals(path, column(name)?, name)?);
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

    /// A file as older versions wrote it: INT64 millisecond times, prices as decimal text.
    fn write_text_file(path: &Path, bars: &[Candle]) {
        let text = |f: fn(&Candle) -> Decimal| bars.iter().map(|c| f(c).normalize().to_string()).collect::<Vec<_>>();
        let mut df = DataFrame::new(
            bars.len(),
            vec![
                Column::new(
                    "timestamp".into(),
                    bars.iter().map(|c| c.open_time.timestamp_millis()).collect::<Vec<_>>(),
                ),
                Column::new("open".into(), text(|c| c.open)),
                Column::new("high".into(), text(|c| c.high)),
                Column::new("low".into(), text(|c| c.low)),
                Column::new("close".into(), text(|c| c.close)),
                Column::new("volume".into(), text(|c| c.volume)),
            ],
        )
        .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        ParquetWriter::new(std::fs::File::create(path).unwrap()).finish(&mut df).unwrap();
    }

    #[test]
    fn writes_decimal_columns_at_the_instrument_scale_and_a_utc_timestamp() {
        let d = tempfile::tempdir().unwrap();
        let store = CandleStore::new(d.path());
        let s = Symbol::new("ADA_BTC").unwrap();
        let tf: Timeframe = "1h".parse().unwrap();
        let mut bars = vec![bar(0, dec!(0.000054)), bar(1, dec!(0.00005345))];
        bars[1].high = dec!(0.0000541);
        store.merge("bittrex", &s, tf, &bars).unwrap();
        let path = store.path("bittrex", &s, tf).unwrap();
        assert_eq!(layout(&path).unwrap(), Layout::Decimal);
        let df = ParquetReader::new(std::fs::File::open(&path).unwrap()).finish().unwrap();
        // one scale for all four prices (high holds 9 decimals in `bar`), volume its own
        let high = df.column("high").unwrap().dtype();
        assert_eq!(high, &DataType::Decimal(38, 9), "123456789012.123456789 needs 21 digits");
        assert_eq!(df.column("close").unwrap().dtype(), &DataType::Decimal(18, 9), "one scale, own precision");
        assert_eq!(df.column("volume").unwrap().dtype(), &DataType::Decimal(18, 8));
        assert_eq!(
            df.column("timestamp").unwrap().dtype(),
            &DataType::Datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
        );
        assert_eq!(store.read("bittrex", &s, tf).unwrap(), bars, "exact, trailing zeros aside");

        // small prices: 18 digits, INT64 in the file
        let small: Vec<Candle> = bars.iter().map(|c| Candle { high: c.open.max(c.close), ..c.clone() }).collect();
        write_file(&path, &small).unwrap();
        let df = ParquetReader::new(std::fs::File::open(&path).unwrap()).finish().unwrap();
        assert_eq!(df.column("high").unwrap().dtype(), &DataType::Decimal(18, 8));
        assert_eq!(read_file(&path).unwrap(), small);
    }

    #[test]
    fn text_files_of_older_versions_are_read_and_migrated_once() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("upbit/KRW-BTC-1h.parquet");
        let bars = vec![bar(0, dec!(1.5)), bar(1, dec!(2.25))];
        write_text_file(&path, &bars);
        assert_eq!(layout(&path).unwrap(), Layout::Text);
        assert_eq!(read_file(&path).unwrap(), bars);
        assert_eq!(migrate_file(&path).unwrap(), Some(2));
        assert_eq!(layout(&path).unwrap(), Layout::Decimal);
        assert_eq!(read_file(&path).unwrap(), bars);
        assert_eq!(migrate_file(&path).unwrap(), None, "a typed file is left alone");
    }

    #[test]
    fn a_value_beyond_38_digits_at_the_common_scale_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut b = bar(0, dec!(1));
        b.volume = Decimal::from_i128_with_scale(79_228_162_514_264_337_593_543_950_335, 0);
        let mut c = bar(1, dec!(1));
        c.volume = dec!(0.0000000000001);
        let e = write_file(&d.path().join("x.parquet"), &[b, c]).unwrap_err();
        assert!(e.to_string().contains("DECIMAL(38, 13)"), "{e}");
    }
}
