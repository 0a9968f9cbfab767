//! Candle CSV files (`timestamp,open,high,low,close,volume`, open time in ISO-8601 UTC), read exactly into
//! `Decimal` for the simulator's replay mode. Every bad line is reported with its number.

use std::path::Path;

use chrono::{DateTime, Utc};
use mcbot_stages::domain::{Candle, Decimal};

/// A candle file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CandleCsvError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file has a header and no candles.
    #[error("{path}: no candles after the header")]
    Empty {
        /// File.
        path: String,
    },
    /// A line is malformed.
    #[error("{path} line {line}: {message}")]
    Line {
        /// File.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Reads and validates a candle CSV: header, six columns, sane OHLC, strictly ascending timestamps.
pub fn read_candles(path: &Path) -> Result<Vec<Candle>, CandleCsvError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CandleCsvError::Read { path: p.clone(), source })?;
    let err = |line: usize, message: String| CandleCsvError::Line { path: p.clone(), line, message };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == "timestamp,open,high,low,close,volume" => {}
        _ => return Err(err(1, "expected header timestamp,open,high,low,close,volume".into())),
    }
    let mut out: Vec<Candle> = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 6 {
            return Err(err(n, format!("expected 6 fields, found {}", f.len())));
        }
        let open_time = DateTime::parse_from_rfc3339(f[0].trim())
            .map_err(|e| err(n, format!("timestamp {:?}: {e}", f[0])))?
            .with_timezone(&Utc);
        let d = |k: usize, name: &str| -> Result<Decimal, CandleCsvError> {
            f[k].trim().parse::<Decimal>().map_err(|e| err(n, format!("{name} {:?}: {e}", f[k])))
        };
        let c = Candle {
            open_time,
            open: d(1, "open")?,
            high: d(2, "high")?,
            low: d(3, "low")?,
            close: d(4, "close")?,
            volume: d(5, "volume")?,
        };
        if !c.is_sane() {
            return Err(err(n, "OHLC not sane (low > 0, high >= open/close >= low)".into()));
        }
        if out.last().is_some_and(|prev| prev.open_time >= c.open_time) {
            return Err(err(n, "timestamps must be strictly ascending".into()));
        }
        out.push(c);
    }
    if out.is_empty() {
        return Err(CandleCsvError::Empty { path: p });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_rejects_with_line_numbers() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.csv");
        std::fs::write(
            &f,
            "timestamp,open,high,low,close,volume\n2017-07-01T11:00:00Z,2505.56,2513.38,2495.12,2509.17,114.6\n",
        )
        .unwrap();
        let c = read_candles(&f).unwrap();
        assert_eq!(c[0].close.to_string(), "2509.17");
        std::fs::write(&f, "timestamp,open,high,low,close,volume\n2017-07-01T11:00:00Z,x,1,1,1,1\n").unwrap();
        let e = read_candles(&f).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("open"), "{e}");
    }
}
