//! Candle files for backtests, read with polars: candle CSV
//! (`timestamp,open,high,low,close,volume`, ISO-8601 UTC open times) and Parquet with the same columns (float,
//! decimal-text or integer prices; datetime, epoch-integer or text times).
//!
//! CSV prices are read as text and parsed with Rust's `f64` parser, which is correctly rounded exactly like
//! Python's `float()`; so the columns are bit for bit the reference implementation's, which exact parity needs
//! (an SMA tie on a flat-price file turns on the last bit).

use std::path::Path;
use std::str::FromStr;

use chrono::DateTime;
use mcbot_stages::backtest::buffers;
use mcbot_stages::domain::{Candle, Decimal, Timeframe};
use mcbot_stages::strategy::{Columns, Ohlcv};
use polars::prelude::*;

/// A file that cannot be used as candles.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DataError {
    /// The file.
    pub path: String,
    /// What is wrong, with the row when one is at fault.
    pub message: String,
}

/// One loaded file.
#[derive(Debug, Clone)]
pub struct Series {
    /// File name without directories (reports name files by it, as the reference does).
    pub name: String,
    /// The bars as f64 columns.
    pub bars: Ohlcv,
    /// The bar length: from the file name's `-1h`-style suffix, else the median spacing of the bars.
    pub timeframe: Option<Timeframe>,
}

const COLUMNS: [&str; 6] = ["timestamp", "open", "high", "low", "close", "volume"];

/// Reads a `.csv` or `.parquet` candle file with every column, checking columns, ascending unique times and
/// OHLC sanity.
pub fn load(path: &Path) -> Result<Series, DataError> {
    load_columns(path, Columns::ALL)
}

/// [`load`], keeping only the columns `needs` names besides time and close (the others stay empty).
///
/// A typed candle file of the store is read by projection: only those columns are decoded, straight into their
/// final buffers. Its bars were screened when written, so the OHLC check covers the columns read. Any other
/// file is read and checked whole, then trimmed.
pub fn load_columns(path: &Path, needs: Columns) -> Result<Series, DataError> {
    let p = path.display().to_string();
    let err = |message: String| DataError { path: p.clone(), message };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let mut bars = match ext.as_str() {
        "csv" => {
            let df = CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(0)) // every column as text: we parse numbers ourselves
                .try_into_reader_with_file_path(Some(path.to_path_buf()))
                .and_then(|r| r.finish())
                .map_err(|e| err(e.to_string()))?;
            let column = |c: &str| {
                df.column(c).map_err(|_| err(format!("missing column {c:?} (expected {})", COLUMNS.join(","))))
            };
            for c in COLUMNS {
                column(c)?;
            }
            Ohlcv {
                time: times(column("timestamp")?, 0).map_err(&err)?,
                open: numbers(column("open")?, "open", 0).map_err(&err)?,
                high: numbers(column("high")?, "high", 0).map_err(&err)?,
                low: numbers(column("low")?, "low", 0).map_err(&err)?,
                close: numbers(column("close")?, "close", 0).map_err(&err)?,
                volume: numbers(column("volume")?, "volume", 0).map_err(&err)?,
            }
        }
        "parquet" | "pq" => {
            let file = ParquetColumns::open(path).map_err(&err)?;
            if file.text_prices {
                eprintln!(
                    "warning: {p} keeps prices as text (the layout of older versions): `mcbot data migrate` rewrites \
                     it with DECIMAL columns, which read many times faster"
                );
            }
            // screened files are projected; others are read whole, for the check
            let read = if file.screened { needs } else { Columns::ALL };
            // the columns side by side (decompressing and converting one is a core's work), each decoded
            // straight into its buffer
            let prices = |name: &'static str, wanted: bool| {
                if !wanted {
                    return Ok(Vec::new());
                }
                file.read(name, move |c, base, out| numbers_into(c, name, base, out))
            };
            let (time, [open, high, low, close, volume]) = std::thread::scope(|s| {
                let time = s.spawn(|| file.read("timestamp", times_into));
                let cols = [
                    ("open", read.open),
                    ("high", read.range),
                    ("low", read.range),
                    ("close", true),
                    ("volume", read.volume),
                ]
                .map(|(name, wanted)| s.spawn(move || prices(name, wanted)));
                (joined(time), cols.map(joined))
            });
            Ohlcv {
                time: time.map_err(&err)?,
                open: open.map_err(&err)?,
                high: high.map_err(&err)?,
                low: low.map_err(&err)?,
                close: close.map_err(&err)?,
                volume: volume.map_err(&err)?,
            }
        }
        other => return Err(err(format!("unsupported extension {other:?}: expected .csv or .parquet"))),
    };
    check(&bars).map_err(&err)?;
    // what was read for the check only is dropped before the run
    let keep = |c: &mut Vec<f64>, wanted: bool| {
        if !wanted {
            *c = Vec::new();
        }
    };
    keep(&mut bars.open, needs.open);
    keep(&mut bars.high, needs.range);
    keep(&mut bars.low, needs.range);
    keep(&mut bars.volume, needs.volume);
    let name = path.file_name().map_or_else(|| p.clone(), |f| f.to_string_lossy().into_owned());
    let timeframe = timeframe_of(&name, &bars.time);
    Ok(Series { name, bars, timeframe })
}

/// A reader thread's result; a panic there is an error of the file, not of the process.
fn joined<T>(h: std::thread::ScopedJoinHandle<'_, Result<T, String>>) -> Result<T, String> {
    h.join().unwrap_or_else(|_| Err("the reader thread panicked".into()))
}

/// Equal column lengths, at least one bar, strictly ascending times, and OHLC sanity over the columns read:
/// prices positive, `low <= open, close <= high` where both ends are there, volume not negative.
fn check(b: &Ohlcv) -> Result<(), String> {
    let n = b.time.len();
    let read = [&b.open, &b.high, &b.low, &b.volume].into_iter().filter(|c| !c.is_empty());
    if b.close.len() != n || read.into_iter().any(|c| c.len() != n) {
        return Err("columns of different lengths".into());
    }
    if n == 0 {
        return Err("no candles after the header".into());
    }
    let range = !b.high.is_empty() && !b.low.is_empty();
    for t in 0..n {
        let row = t + 2; // 1-based, after the header
        let (c, o) = (b.close[t], b.open.get(t).copied().unwrap_or(b.close[t]));
        let sane =
            if range { b.low[t] > 0.0 && b.low[t] <= o.min(c) && b.high[t] >= o.max(c) } else { c > 0.0 && o > 0.0 }
                && b.volume.get(t).is_none_or(|v| *v >= 0.0);
        if !sane {
            return Err(format!("row {row}: OHLC not sane (need low > 0, low <= open/close <= high, volume >= 0)"));
        }
        if t > 0 && b.time[t] <= b.time[t - 1] {
            return Err(format!("row {row}: timestamps must be strictly ascending"));
        }
    }
    Ok(())
}

/// The bars as exact-decimal candles, for the event-driven engine. Each price is the decimal of the f64's
/// shortest round-trip text, which for a price read from text of up to 15 significant digits is that text's
/// exact value.
pub fn candles(bars: &Ohlcv) -> Vec<Candle> {
    let d = |v: f64| Decimal::from_str(&format!("{v}")).unwrap_or(Decimal::ZERO);
    (0..bars.len())
        .map(|t| Candle {
            open_time: DateTime::from_timestamp(bars.time[t], 0).unwrap_or_default(),
            open: d(bars.open[t]),
            high: d(bars.high[t]),
            low: d(bars.low[t]),
            close: d(bars.close[t]),
            volume: d(bars.volume[t]),
        })
        .collect()
}

/// A candle Parquet file read column by column (projection): the footer is parsed once, and each column is
/// decoded only when asked for, so a scan never holds more than one decoded column beside its output.
struct ParquetColumns {
    path: std::path::PathBuf,
    metadata: FileMetadataRef,
    /// The prices are decimal text (files written by older versions).
    text_prices: bool,
    /// A typed file of the candle store, whose bars were screened when written.
    screened: bool,
}

impl ParquetColumns {
    fn open(path: &Path) -> Result<Self, String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut reader = ParquetReader::new(file);
        let schema = reader.schema().map_err(|e| e.to_string())?;
        for c in COLUMNS {
            if schema.get(c).is_none() {
                return Err(format!("missing column {c:?} (expected {})", COLUMNS.join(",")));
            }
        }
        let text_prices = schema.get("close").is_some_and(|f| {
            matches!(f.dtype, ArrowDataType::Utf8 | ArrowDataType::LargeUtf8 | ArrowDataType::Utf8View)
        });
        let metadata = reader.get_metadata().map_err(|e| e.to_string())?.clone();
        let screened = !text_prices
            && metadata.key_value_metadata.iter().flatten().any(|kv| {
                kv.key == crate::market_data::FORMAT_KEY
                    && kv.value.as_deref() == Some(crate::market_data::FORMAT_TYPED)
            });
        Ok(Self { path: path.to_path_buf(), metadata, text_prices, screened })
    }

    /// Column `name`, decoded one row group at a time and appended by `convert(column, first_row, out)` to one
    /// output buffer: only a row group's decoded values (a DECIMAL is 16 bytes a value in polars) are alive
    /// beside the output, never the whole column's.
    fn read<T>(
        &self,
        name: &str,
        convert: impl Fn(&Column, usize, &mut Vec<T>) -> Result<(), String>,
    ) -> Result<Vec<T>, String> {
        let mut file = std::fs::File::open(&self.path).map_err(|e| e.to_string())?;
        let mut out = buffers::with_capacity(self.metadata.num_rows);
        for group in &self.metadata.row_groups {
            let rows = group.num_rows();
            let mut reader = ParquetReader::new(&mut file)
                .with_columns(Some(vec![name.to_owned()]))
                .with_slice(Some((out.len(), rows)));
            reader.set_metadata(self.metadata.clone());
            let mut df = reader.finish().map_err(|e| e.to_string())?;
            let column = df.drop_in_place(name).map_err(|e| e.to_string())?;
            let base = out.len();
            convert(&column, base, &mut out)?;
        }
        Ok(out)
    }
}

/// DECIMAL mantissas at `scale` as the nearest f64, each exactly what parsing the decimal's text gives (Rust's
/// and Python's parsers are correctly rounded): for a mantissa below 2^53 and at most 22 decimals one IEEE
/// division of two exactly representable values, which is correctly rounded; otherwise through the text.
fn decimal_column(col: &Column, name: &str, scale: usize, base: usize, out: &mut Vec<f64>) -> Result<(), String> {
    const EXACT: u64 = 1 << 53;
    let ca = col.decimal().map_err(|e| e.to_string())?;
    let phys = ca.physical();
    if phys.null_count() > 0 {
        let i = phys.iter().position(|v| v.is_none()).unwrap_or(0);
        return Err(format!("row {}: {name} is empty", base + i + 2));
    }
    let fast = scale <= 22;
    let div = 10f64.powi(i32::try_from(scale).unwrap_or(i32::MAX));
    let slow = |m: i128| format!("{m}e-{scale}").parse::<f64>().unwrap_or(f64::NAN);
    let from = out.len();
    for arr in phys.downcast_iter() {
        out.extend(arr.values().iter().map(|&m| {
            let small = m as i64;
            if fast && i128::from(small) == m && small.unsigned_abs() < EXACT { small as f64 / div } else { slow(m) }
        }));
    }
    match out[from..].iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format!("row {}: {name} is not a finite number", base + i + 2)),
        None => Ok(()),
    }
}

/// [`times`] appended to `out`; a datetime column (the candle store's) is converted straight from its stored
/// integers, without a copy of the row group between.
fn times_into(col: &Column, base: usize, out: &mut Vec<i64>) -> Result<(), String> {
    match col.dtype() {
        DataType::Datetime(unit, _) => datetimes_into(col, *unit, base, out),
        _ => {
            out.extend(times(col, base)?);
            Ok(())
        }
    }
}

/// A datetime column's instants as epoch seconds, appended to `out`.
fn datetimes_into(col: &Column, unit: TimeUnit, base: usize, out: &mut Vec<i64>) -> Result<(), String> {
    let div = match unit {
        TimeUnit::Milliseconds => 1_000,
        TimeUnit::Microseconds => 1_000_000,
        TimeUnit::Nanoseconds => 1_000_000_000,
    };
    let phys = col.datetime().map_err(|e| e.to_string())?.physical();
    if phys.null_count() > 0 {
        let i = phys.iter().position(|v| v.is_none()).unwrap_or(0);
        return Err(format!("row {}: empty timestamp", base + i + 2));
    }
    for arr in phys.downcast_iter() {
        out.extend(arr.values().iter().map(|x| x.div_euclid(div)));
    }
    Ok(())
}

/// [`numbers`] appended to `out`; DECIMAL columns are converted in place, without a buffer between.
fn numbers_into(col: &Column, name: &str, base: usize, out: &mut Vec<f64>) -> Result<(), String> {
    if let DataType::Decimal(_, scale) = col.dtype() {
        return decimal_column(col, name, *scale, base, out);
    }
    out.extend(numbers(col, name, base)?);
    Ok(())
}

/// Open times as epoch seconds from text (RFC 3339 / ISO-8601, `Z` optional), a datetime column or integers
/// (milliseconds when larger than 1e11, else seconds).
fn times(col: &Column, base: usize) -> Result<Vec<i64>, String> {
    match col.dtype() {
        DataType::String => col
            .str()
            .map_err(|e| e.to_string())?
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s.ok_or_else(|| format!("row {}: empty timestamp", base + i + 2))?.trim();
                parse_time(s).ok_or_else(|| format!("row {}: timestamp {s:?} is not ISO-8601 UTC", base + i + 2))
            })
            .collect(),
        DataType::Datetime(unit, _) => {
            let mut out = Vec::with_capacity(col.len());
            datetimes_into(col, *unit, base, &mut out)?;
            Ok(out)
        }
        dt if dt.is_integer() => {
            let phys = col.cast(&DataType::Int64).map_err(|e| e.to_string())?;
            ints(&phys, base).map(|v| {
                v.into_iter().map(|x| if x.abs() > 100_000_000_000 { x.div_euclid(1000) } else { x }).collect()
            })
        }
        other => Err(format!("timestamp column has type {other}: expected text, datetime or integer")),
    }
}

fn ints(col: &Column, base: usize) -> Result<Vec<i64>, String> {
    col.i64()
        .map_err(|e| e.to_string())?
        .iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| format!("row {}: empty timestamp", base + i + 2)))
        .collect()
}

fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp());
    }
    let naive = s.trim_end_matches('Z');
    chrono::NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(naive, "%Y-%m-%d %H:%M:%S"))
        .ok()
        .map(|t| t.and_utc().timestamp())
}

/// A price/volume column as f64: text is parsed with Rust's correctly rounded parser, numeric columns are cast
/// (DECIMAL columns, exact, go through [`numbers_into`]).
fn numbers(col: &Column, name: &str, base: usize) -> Result<Vec<f64>, String> {
    let bad = |i: usize, v: &str| format!("row {}: {name} {v:?} is not a number", base + i + 2);
    if col.dtype() == &DataType::String {
        return col
            .str()
            .map_err(|e| e.to_string())?
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s.unwrap_or("").trim();
                s.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| bad(i, s))
            })
            .collect();
    }
    let f = col.cast(&DataType::Float64).map_err(|e| format!("{name}: {e}"))?;
    f.f64()
        .map_err(|e| e.to_string())?
        .iter()
        .enumerate()
        .map(|(i, v)| v.filter(|v| v.is_finite()).ok_or_else(|| bad(i, "null")))
        .collect()
}

/// The timeframe from a `NAME-1h.csv`-style file name, else from the median bar spacing.
pub fn timeframe_of(name: &str, time: &[i64]) -> Option<Timeframe> {
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    if let Some(tf) = stem.rsplit_once('-').and_then(|(_, tf)| tf.parse().ok()) {
        return Some(tf);
    }
    let mut gaps: Vec<i64> = time.windows(2).map(|w| w[1] - w[0]).collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_unstable();
    let minutes = gaps[gaps.len() / 2] / 60;
    u32::try_from(minutes).ok().and_then(|m| Timeframe::from_minutes(m).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_csv_exactly_and_reports_bad_rows() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("X-1h.csv");
        std::fs::write(
            &f,
            "timestamp,open,high,low,close,volume\n2017-07-01T11:00:00Z,2505.56,2513.38,2495.12,2509.17,114.6\n\
             2017-07-01T12:00:00Z,2509.17,2512.87,2484.99,2488.43,0.1\n",
        )
        .unwrap();
        let s = load(&f).unwrap();
        assert_eq!(s.bars.close, vec![2509.17, 2488.43]);
        assert_eq!(s.bars.time[1] - s.bars.time[0], 3600);
        assert_eq!(candles(&s.bars)[1].volume.to_string(), "0.1");
        assert_eq!(candles(&s.bars)[0].close.to_string(), "2509.17");
        assert_eq!(s.timeframe.map(|t| t.to_string()), Some("1h".into()));

        let bad = d.path().join("bad.csv");
        std::fs::write(&bad, "timestamp,open,high,low,close,volume\n2017-07-01T11:00:00Z,1,2,0.5,x,1\n").unwrap();
        let e = load(&bad).unwrap_err().to_string();
        assert!(e.contains("row 2") && e.contains("close"), "{e}");
        std::fs::write(&bad, "timestamp,open,high,low,close,volume\n2017-07-01T11:00:00Z,1,2,0.5,3,1\n").unwrap();
        assert!(load(&bad).unwrap_err().to_string().contains("not sane"));
        std::fs::write(&bad, "time,open\n1,2\n").unwrap();
        assert!(load(&bad).unwrap_err().to_string().contains("missing column"));
        assert!(load(&d.path().join("none.csv")).is_err());
        assert!(load(&d.path().join("x.txt")).unwrap_err().to_string().contains("unsupported"));
    }

    #[test]
    fn decimal_parquet_gives_the_floats_of_the_price_text() {
        use crate::market_data::CandleStore;
        use mcbot_stages::domain::Symbol;
        let texts = [
            ("0.00005352", "0.000054", "0.00005348", "0.000054", "100380.64502838"),
            ("2505.56", "123456789012.123456789", "0.1", "2509.17", "0.0000000000000000000000001"),
            ("0.30000000000000004", "9007199254740993", "0.1", "9007199254740993", "12345"),
        ];
        let d = tempfile::tempdir().unwrap();
        let dec = |s: &str| Decimal::from_str(s).unwrap();
        let candles: Vec<Candle> = texts
            .iter()
            .enumerate()
            .map(|(h, (o, hi, l, c, v))| Candle {
                open_time: DateTime::from_timestamp(1_704_067_200 + 3600 * h as i64, 0).unwrap(),
                open: dec(o),
                high: dec(hi),
                low: dec(l),
                close: dec(c),
                volume: dec(v),
            })
            .collect();
        let store = CandleStore::new(d.path());
        let (sym, tf) = (Symbol::new("ABC").unwrap(), "1h".parse().unwrap());
        store.merge("t", &sym, tf, &candles).unwrap();
        let s = load(&store.path("t", &sym, tf).unwrap()).unwrap();
        let f = |s: &str| s.parse::<f64>().unwrap();
        for (t, (o, hi, l, c, v)) in texts.iter().enumerate() {
            let want = [f(o), f(hi), f(l), f(c), f(v)];
            let got = [s.bars.open[t], s.bars.high[t], s.bars.low[t], s.bars.close[t], s.bars.volume[t]];
            assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "bar {t}");
        }
        assert_eq!(s.bars.time[1] - s.bars.time[0], 3600);
        assert_eq!(s.timeframe.map(|t| t.to_string()), Some("1h".into()));
    }

    #[test]
    fn typed_files_are_read_by_projection_and_other_files_whole() {
        use crate::market_data::CandleStore;
        use mcbot_stages::domain::Symbol;
        let d = tempfile::tempdir().unwrap();
        let candles: Vec<Candle> = (0..5)
            .map(|h| Candle {
                open_time: DateTime::from_timestamp(1_704_067_200 + 3600 * h, 0).unwrap(),
                open: Decimal::from(10 + h),
                high: Decimal::from(20 + h),
                low: Decimal::from(5),
                close: Decimal::from(11 + h),
                volume: Decimal::from(h),
            })
            .collect();
        let store = CandleStore::new(d.path());
        let (sym, tf) = (Symbol::new("ABC").unwrap(), "1h".parse().unwrap());
        store.merge("t", &sym, tf, &candles).unwrap();
        let typed = store.path("t", &sym, tf).unwrap();
        let whole = load(&typed).unwrap().bars;
        let close_only = load_columns(&typed, Columns::CLOSE).unwrap().bars;
        assert_eq!((close_only.time.clone(), close_only.close.clone()), (whole.time.clone(), whole.close.clone()));
        assert!(close_only.open.is_empty() && close_only.high.is_empty() && close_only.low.is_empty());
        assert!(close_only.volume.is_empty());
        assert_eq!(close_only.len(), 5);
        let opens = load_columns(&typed, Columns { open: true, ..Columns::CLOSE }).unwrap().bars;
        assert_eq!(opens.open, whole.open);

        // a file from elsewhere is checked whole even when one column is wanted: a low above the close is refused
        let other = d.path().join("other-1h.parquet");
        let mut df = DataFrame::new(
            2,
            vec![
                Column::new("timestamp".into(), [1_704_067_200_000i64, 1_704_070_800_000]),
                Column::new("open".into(), [10.0, 10.0]),
                Column::new("high".into(), [12.0, 12.0]),
                Column::new("low".into(), [9.0, 11.5]),
                Column::new("close".into(), [11.0, 11.0]),
                Column::new("volume".into(), [1.0, 1.0]),
            ],
        )
        .unwrap();
        ParquetWriter::new(std::fs::File::create(&other).unwrap()).finish(&mut df).unwrap();
        let e = load_columns(&other, Columns::CLOSE).unwrap_err().to_string();
        assert!(e.contains("row 3") && e.contains("not sane"), "{e}");
    }

    #[test]
    fn timeframe_from_name_or_spacing() {
        assert_eq!(timeframe_of("A_B-5m.csv", &[]).map(|t| t.minutes()), Some(5));
        assert_eq!(timeframe_of("data.csv", &[0, 60, 120, 300]).map(|t| t.minutes()), Some(1));
        assert_eq!(timeframe_of("data.csv", &[0]), None);
    }
}
