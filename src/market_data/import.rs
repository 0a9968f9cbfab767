//! `mcbot data import`: a candle CSV (`timestamp,open,high,low,close,volume`, open
//! times ISO-8601 UTC, exact decimals) into the same Parquet store as downloads, checked the same way.

use std::collections::BTreeSet;
use std::path::Path;

use mcbot_stages::domain::{Symbol, Timeframe};

use super::checks::{Quality, check_series, screen};
use super::store::CandleStore;
use super::{MarketDataError, SeriesReport};
use crate::candles_csv::read_candles;

/// Imports `csv` as `symbol` at `tf` under `exchange`; bars already stored are kept and counted as duplicates.
pub fn import_csv(
    store: &CandleStore,
    exchange: &str,
    csv: &Path,
    symbol: &Symbol,
    tf: Timeframe,
) -> Result<SeriesReport, MarketDataError> {
    // Parses exactly and refuses malformed lines, insane bars and unsorted times, naming the line.
    let bars = read_candles(csv)?;
    let fetched = bars.len();
    let held: BTreeSet<_> = store.read(exchange, symbol, tf)?.iter().map(|c| c.open_time).collect();
    let mut quality = Quality::default();
    let clean = screen(bars, tf, &held, &mut quality);
    let outcome = store.merge(exchange, symbol, tf, &clean)?;
    let all = store.read(exchange, symbol, tf)?;
    let series = check_series(&all, tf);
    quality.gaps = series.gaps;
    quality.missing_bars = series.missing_bars;
    Ok(SeriesReport {
        exchange: exchange.to_owned(),
        symbol: symbol.to_string(),
        timeframe: tf.to_string(),
        file: store.path(exchange, symbol, tf)?,
        fetched,
        added: outcome.added,
        stored: all.len(),
        first: all.first().map(|c| c.open_time),
        last: all.last().map(|c| c.open_time),
        quality,
    })
}
