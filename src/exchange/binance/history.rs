//! Closed bars over REST for any range: klines pages of 1000 rows, the forming bar dropped. Shared by the
//! adapter (lookbacks, data download) and the stream (gap backfill), so both see the same bars.

use chrono::{DateTime, Utc};

use mcbot_stages::domain::{Candle, Symbol, Timeframe};

use super::errors::BinanceError;
use super::rest::{BinanceRest, KLINES_MAX_LIMIT};

/// Closed bars of `symbol` whose open time lies in [`from`, `to`], oldest first, paging as needed. A bar is
/// closed when its close time (open + timeframe) is at or before `now`; the forming bar Binance appends is
/// dropped. Rows out of range or out of order are skipped, so a repeated row is never returned twice.
pub async fn closed_klines(
    rest: &BinanceRest,
    symbol: &Symbol,
    tf: Timeframe,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<Candle>, BinanceError> {
    let mut out: Vec<Candle> = Vec::new();
    let mut cursor = from;
    while cursor <= to {
        let rows = rest.klines(symbol, tf, Some(cursor), Some(to), KLINES_MAX_LIMIT).await?;
        let full_page = rows.len() >= usize::from(KLINES_MAX_LIMIT);
        let mut progressed = false;
        for row in rows {
            let candle = row.to_candle().ok_or_else(|| {
                BinanceError::malformed("klines", format!("open time {} out of range", row.open_time))
            })?;
            let after_last = out.last().is_none_or(|l| candle.open_time > l.open_time);
            if candle.open_time < cursor || candle.open_time > to || !after_last {
                continue;
            }
            if candle.close_time(tf) > now {
                // The bar still forming: never served.
                continue;
            }
            progressed = true;
            out.push(candle);
        }
        match out.last() {
            Some(last) if progressed && full_page => cursor = last.open_time + tf.duration(),
            _ => break,
        }
    }
    Ok(out)
}
