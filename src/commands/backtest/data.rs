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
use mcbot_stages::domain::{Candle, Decimal, Timeframe};
use mcbot_stages::strategy::Ohlcv;
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

/// Reads a `.csv` or `.parquet` candle file, checking columns, ascending unique times and OHLC sanity.
pub fn load(path: &Path) -> Result<Series, DataError> {
    let p = path.display().to_string();
    let err = |message: String| DataError { path: p.clone(), message };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let df = match ext.as_str() {
        "csv" => CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0)) // every column as text: we parse numbers ourselves
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish()),
        "parquet" | "pq" => {
            std::fs::File::open(path).map_err(PolarsError::from).and_then(|f| ParquetReader::new(f).finish())
        }
        other => return Err(err(format!("unsupported extension {other:?}: expected .csv or .parquet"))),
    }
    .map_err(|e| err(e.to_string()))?;
    for c in COLUMNS {
        if df.column(c).is_err() {
            return Err(err(format!("missing column {c:?} (expected {})", COLUMNS.join(","))));
        }
    }
    let n = df.height();
    if n == 0 {
        return Err(err("no candles after the header".into()));
    }
    let time = times(df.column("timestamp").map_err(|e| err(e.to_string()))?).map_err(&err)?;
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(5);
    for c in &COLUMNS[1..] {
        cols.push(numbers(df.column(c).map_err(|e| err(e.to_string()))?, c).map_err(&err)?);
    }
    let [open, high, low, close, volume]: [Vec<f64>; 5] =
        cols.try_into().map_err(|_| err("internal: column count".into()))?;
    for t in 0..n {
        let row = t + 2; // 1-based, after the header
        let sane =
            low[t] > 0.0 && low[t] <= open[t].min(close[t]) && high[t] >= open[t].max(close[t]) && volume[t] >= 0.0;
        if !sane {
            return Err(err(format!(
                "row {row}: OHLC not sane (need low > 0, low <= open/close <= high, volume >= 0)"
            )));
        }
        if t > 0 && time[t] <= time[t - 1] {
            return Err(err(format!("row {row}: timestamps must be strictly ascending")));
        }
    }
    let bars = Ohlcv { time, open, high, low, close, volume };
    let name = path.file_name().map_or_else(|| p.clone(), |f| f.to_string_lossy().into_owned());
    let timeframe = timeframe_of(&name, &bars.time);
    Ok(Series { name, bars, timeframe })
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

/// Open times as epoch seconds from text (RFC 3339 / ISO-8601, `Z` optional), a datetime column or integers
/// (milliseconds when larger than 1e11, else seconds).
fn times(col: &Column) -> Result<Vec<i64>, String> {
    match col.dtype() {
        DataType::String => col
            .str()
            .map_err(|e| e.to_string())?
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s.ok_or_else(|| format!("row {}: empty timestamp", i + 2))?.trim();
                parse_time(s).ok_or_else(|| format!("row {}: timestamp {s:?} is not ISO-8601 UTC", i + 2))
            })
            .collect(),
        DataType::Datetime(unit, _) => {
            let div = match unit {
                TimeUnit::Milliseconds => 1_000,
                TimeUnit::Microseconds => 1_000_000,
                TimeUnit::Nanoseconds => 1_000_000_000,
            };
            let phys = col.cast(&DataType::Int64).map_err(|e| e.to_string())?;
            ints(&phys).map(|v| v.into_iter().map(|x| x.div_euclid(div)).collect())
        }
        dt if dt.is_integer() => {
            let phys = col.cast(&DataType::Int64).map_err(|e| e.to_string())?;
            ints(&phys).map(|v| {
                v.into_iter().map(|x| if x.abs() > 100_000_000_000 { x.div_euclid(1000) } else { x }).collect()
            })
        }
        other => Err(format!("timestamp column has type {other}: expected text, datetime or integer")),
    }
}

fn ints(col: &Column) -> Result<Vec<i64>, String> {
    col.i64()
        .map_err(|e| e.to_string())?
        .iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| format!("row {}: empty timestamp", i + 2)))
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

/// A price/volume column as f64: text is parsed with Rust's correctly rounded parser, numeric columns are cast.
fn numbers(col: &Column, name: &str) -> Result<Vec<f64>, String> {
    let bad = |i: usize, v: &str| format!("row {}: {name} {v:?} is not a number", i + 2);
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
    fn timeframe_from_name_or_spacing() {
        assert_eq!(timeframe_of("A_B-5m.csv", &[]).map(|t| t.minutes()), Some(5));
        assert_eq!(timeframe_of("data.csv", &[0, 60, 120, 300]).map(|t| t.minutes()), Some(1));
        assert_eq!(timeframe_of("data.csv", &[0]), None);
    }
}
