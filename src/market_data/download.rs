//! The download loop, generic over the [`Exchange`] port so it works with Binance, Upbit and the simulator. It
//! only uses `closed_candles(symbol, tf, until, limit)` ("the newest `limit` closed bars up to `until`"): the
//! range is walked forwards in windows of `page_size` bars, each window filled by paging backwards from its end,
//! and flushed to the store as it goes. A later run (or a run after a crash) fetches only what is missing
//! before the first and after the last stored bar, so nothing is downloaded or stored twice.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use indicatif::ProgressBar;
use mcbot_stages::Clock;
use mcbot_stages::domain::{Candle, Symbol, Timeframe};
use mcbot_stages::ports::{Exchange, ExchangeError};

use super::checks::{Quality, check_series, screen};
use super::store::CandleStore;
use super::{MarketDataError, SeriesReport};

/// How a download runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadOptions {
    /// First bar wanted (open time); `None` resumes after the last stored bar.
    pub from: Option<DateTime<Utc>>,
    /// End of the range (exclusive, capped at the clock's now: only closed bars); `None` means now.
    pub to: Option<DateTime<Utc>>,
    /// Bars asked per `closed_candles` call (and per window).
    pub page_size: usize,
    /// Bars held in memory before the file is rewritten; an interruption loses at most this many.
    pub flush_every: usize,
    /// Attempts after a retryable exchange error (waiting what the exchange asks, at most a minute).
    pub retries: u32,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self { from: None, to: None, page_size: 1000, flush_every: 20_000, retries: 3 }
    }
}

/// The first open time of `tf` at or after `t`.
fn align_up(t: DateTime<Utc>, tf: Timeframe) -> DateTime<Utc> {
    match t.duration_trunc(tf.duration()) {
        Ok(a) if a == t => t,
        Ok(a) => a + tf.duration(),
        Err(_) => t,
    }
}

/// Bars of `tf` between two open times.
fn bars_between(a: DateTime<Utc>, b: DateTime<Utc>, tf: Timeframe) -> u64 {
    u64::try_from((b - a).num_minutes() / i64::from(tf.minutes())).unwrap_or(0)
}

struct Run<'a> {
    exchange: &'a dyn Exchange,
    store: &'a CandleStore,
    symbol: &'a Symbol,
    tf: Timeframe,
    opts: &'a DownloadOptions,
    progress: &'a ProgressBar,
    held: BTreeSet<DateTime<Utc>>,
    buffer: Vec<Candle>,
    quality: Quality,
    fetched: usize,
    added: usize,
}

impl Run<'_> {
    async fn call(&self, until: DateTime<Utc>) -> Result<Vec<Candle>, ExchangeError> {
        let mut attempt = 0;
        loop {
            match self.exchange.closed_candles(self.symbol, self.tf, until, self.opts.page_size).await {
                Err(ExchangeError::Retryable { retry_after, message }) if attempt < self.opts.retries => {
                    attempt += 1;
                    tracing::warn!(symbol = %self.symbol, attempt, "candle download retrying: {message}");
                    tokio::time::sleep(retry_after.min(Duration::from_secs(60))).await;
                }
                other => return other,
            }
        }
    }

    /// Every bar opening in `[lo, hi)`, paging backwards from `hi` until the page reaches `lo` or runs dry.
    async fn window(&mut self, lo: DateTime<Utc>, hi: DateTime<Utc>) -> Result<(), ExchangeError> {
        let mut until = hi;
        loop {
            let page = self.call(until).await?;
            let Some(oldest) = page.iter().map(|c| c.open_time).min() else { break };
            let before = self.buffer.len();
            self.buffer.extend(page.into_iter().filter(|c| c.open_time >= lo && c.open_time < hi));
            self.fetched += self.buffer.len() - before;
            if oldest <= lo || oldest >= until {
                break;
            }
            until = oldest;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), MarketDataError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let incoming = std::mem::take(&mut self.buffer);
        let clean = screen(incoming, self.tf, &self.held, &mut self.quality);
        let outcome = self.store.merge(self.exchange.name(), self.symbol, self.tf, &clean)?;
        self.held.extend(clean.iter().map(|c| c.open_time));
        self.added += outcome.added;
        Ok(())
    }

    async fn range(&mut self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<(), MarketDataError> {
        let step = self.tf.duration() * i32::try_from(self.opts.page_size.max(1)).unwrap_or(1000);
        let mut cursor = start;
        while cursor < end {
            let hi = (cursor + step).min(end);
            if let Err(source) = self.window(cursor, hi).await {
                // Keep what was fetched: the next run resumes after it.
                self.flush()?;
                return Err(MarketDataError::Exchange {
                    symbol: self.symbol.to_string(),
                    stored: self.held.len(),
                    source,
                });
            }
            self.progress.inc(bars_between(cursor, hi, self.tf));
            if self.buffer.len() >= self.opts.flush_every {
                self.flush()?;
            }
            cursor = hi;
        }
        self.flush()
    }
}

/// Downloads `symbol` at `tf` from `exchange` into `store`, resuming around what is already stored, and reports
/// what was fetched and the quality of the stored series.
pub async fn download_series(
    exchange: &dyn Exchange,
    store: &CandleStore,
    symbol: &Symbol,
    tf: Timeframe,
    opts: &DownloadOptions,
    clock: &dyn Clock,
    progress: &ProgressBar,
) -> Result<SeriesReport, MarketDataError> {
    let name = exchange.name().to_owned();
    let stored = store.read(&name, symbol, tf)?;
    let now = clock.now();
    let end = tf.last_close(opts.to.map_or(now, |t| t.min(now)));
    let span = stored.first().zip(stored.last()).map(|(f, l)| (f.open_time, l.open_time + tf.duration()));
    let mut ranges: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    match (opts.from.map(|f| align_up(f, tf)), span) {
        (Some(from), None) => ranges.push((from, end)),
        (None, Some((_, after))) => ranges.push((after, end)),
        (Some(from), Some((first, after))) => {
            ranges.push((from, first.min(end)));
            ranges.push((from.max(after), end));
        }
        (None, None) => {}
    }
    ranges.retain(|(a, b)| a < b);
    progress.set_length(ranges.iter().map(|(a, b)| bars_between(*a, *b, tf)).sum());
    progress.set_message(format!("{name} {symbol} {tf}"));
    let mut run = Run {
        exchange,
        store,
        symbol,
        tf,
        opts,
        progress,
        held: stored.iter().map(|c| c.open_time).collect(),
        buffer: Vec::new(),
        quality: Quality::default(),
        fetched: 0,
        added: 0,
    };
    for (a, b) in ranges {
        run.range(a, b).await?;
    }
    let all = store.read(&name, symbol, tf)?;
    let series = check_series(&all, tf);
    let mut quality = run.quality;
    quality.gaps = series.gaps;
    quality.missing_bars = series.missing_bars;
    Ok(SeriesReport {
        exchange: name.clone(),
        symbol: symbol.to_string(),
        timeframe: tf.to_string(),
        file: store.path(&name, symbol, tf)?,
        fetched: run.fetched,
        added: run.added,
        stored: all.len(),
        first: all.first().map(|c| c.open_time),
        last: all.last().map(|c| c.open_time),
        quality,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_and_counts() {
        let tf: Timeframe = "1h".parse().unwrap();
        let t = DateTime::parse_from_rfc3339("2024-01-01T10:20:00Z").unwrap().to_utc();
        assert_eq!(align_up(t, tf).to_rfc3339(), "2024-01-01T11:00:00+00:00");
        let a = DateTime::parse_from_rfc3339("2024-01-01T10:00:00Z").unwrap().to_utc();
        assert_eq!(align_up(a, tf), a);
        assert_eq!(bars_between(a, a + chrono::Duration::hours(5), tf), 5);
    }
}
