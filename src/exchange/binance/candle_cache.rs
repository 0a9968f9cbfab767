//! Closed bars per symbol as the stream delivered them, served to DataCollection without a REST call when they
//! are complete up to the bar asked for. Every bar is published once on a broadcast channel, in order, so a
//! consumer (Analysis, a test) sees each bar exactly once even across reconnects and backfills.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use mcbot_stages::domain::{Candle, Symbol, Timeframe};

/// Where a closed bar came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarSource {
    /// A closed-kline WebSocket event (or bars aggregated from them).
    Stream,
    /// A REST backfill after a gap, a reconnect or at start.
    Backfill,
}

/// A bar that has just entered the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedBar {
    /// The pair.
    pub symbol: Symbol,
    /// Bar length.
    pub timeframe: Timeframe,
    /// The bar.
    pub candle: Candle,
    /// How it arrived.
    pub source: BarSource,
    /// When the cache took it (injected clock), for the "closed kline to Analysis" latency.
    pub received_at: DateTime<Utc>,
}

/// The per-symbol cache of closed bars of one timeframe.
pub struct CandleCache {
    timeframe: Timeframe,
    capacity: usize,
    bars: Mutex<HashMap<Symbol, VecDeque<Candle>>>,
    tx: broadcast::Sender<ClosedBar>,
}

impl CandleCache {
    /// A cache keeping `capacity` bars per symbol.
    pub fn new(timeframe: Timeframe, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(4_096);
        Self { timeframe, capacity: capacity.max(1), bars: Mutex::new(HashMap::new()), tx }
    }

    /// The timeframe of the bars held.
    pub fn timeframe(&self) -> Timeframe {
        self.timeframe
    }

    /// Every bar inserted from now on, once each, in insertion order per symbol.
    pub fn subscribe(&self) -> broadcast::Receiver<ClosedBar> {
        self.tx.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Symbol, VecDeque<Candle>>> {
        self.bars.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a bar newer than the last one held and publishes it; an older or repeated bar is ignored and
    /// `false` returned. This is what makes delivery exactly-once.
    pub fn insert(&self, symbol: &Symbol, candle: Candle, source: BarSource, received_at: DateTime<Utc>) -> bool {
        let mut bars = self.lock();
        let q = bars.entry(symbol.clone()).or_default();
        if q.back().is_some_and(|last| candle.open_time <= last.open_time) {
            return false;
        }
        q.push_back(candle.clone());
        while q.len() > self.capacity {
            q.pop_front();
        }
        // Published under the lock, so subscribers see bars in the order they entered.
        let _ =
            self.tx.send(ClosedBar { symbol: symbol.clone(), timeframe: self.timeframe, candle, source, received_at });
        true
    }

    /// Open time of the newest bar held.
    pub fn last_open(&self, symbol: &Symbol) -> Option<DateTime<Utc>> {
        self.lock().get(symbol).and_then(|q| q.back()).map(|c| c.open_time)
    }

    /// The `limit` bars ending with the bar opened at `last_open`, when the cache holds all of them without a
    /// hole; `None` (ask REST) when it is stale, short or has a gap.
    pub fn closed_until(&self, symbol: &Symbol, last_open: DateTime<Utc>, limit: usize) -> Option<Vec<Candle>> {
        let bars = self.lock();
        let q = bars.get(symbol)?;
        let end = q.iter().rposition(|c| c.open_time == last_open)?;
        if limit == 0 {
            return Some(Vec::new());
        }
        let start = (end + 1).checked_sub(limit)?;
        let slice: Vec<Candle> = q.range(start..=end).cloned().collect();
        let tf = self.timeframe.duration();
        slice.windows(2).all(|w| w[1].open_time - w[0].open_time == tf).then_some(slice)
    }

    /// Every bar held for `symbol`, oldest first.
    pub fn bars(&self, symbol: &Symbol) -> Vec<Candle> {
        self.lock().get(symbol).map(|q| q.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn bar(minute: i64) -> Candle {
        let p = Decimal::from(100 + minute);
        Candle {
            open_time: DateTime::from_timestamp(1_700_000_000 - 1_700_000_000 % 60 + minute * 60, 0).unwrap(),
            open: p,
            high: p,
            low: p,
            close: p,
            volume: Decimal::ONE,
        }
    }

    #[test]
    fn bars_enter_once_in_order_and_are_served_only_when_complete() {
        let tf: Timeframe = "1m".parse().unwrap();
        let cache = CandleCache::new(tf, 3);
        let mut rx = cache.subscribe();
        let s = Symbol::new("BTCUSDT").unwrap();
        let now = bar(0).open_time;
        assert!(cache.insert(&s, bar(1), BarSource::Backfill, now));
        assert!(cache.insert(&s, bar(2), BarSource::Stream, now));
        assert!(!cache.insert(&s, bar(2), BarSource::Backfill, now), "repeat ignored");
        assert!(!cache.insert(&s, bar(1), BarSource::Stream, now), "older ignored");
        assert_eq!(rx.try_recv().unwrap().candle, bar(1));
        assert_eq!(rx.try_recv().unwrap().candle, bar(2));
        assert!(rx.try_recv().is_err());
        assert_eq!(cache.closed_until(&s, bar(2).open_time, 2), Some(vec![bar(1), bar(2)]));
        assert_eq!(cache.closed_until(&s, bar(3).open_time, 1), None, "stale");
        assert_eq!(cache.closed_until(&s, bar(2).open_time, 3), None, "short");
        assert!(cache.insert(&s, bar(4), BarSource::Stream, now));
        assert_eq!(cache.closed_until(&s, bar(4).open_time, 2), None, "gap");
        assert!(cache.insert(&s, bar(5), BarSource::Stream, now));
        assert_eq!(cache.bars(&s).len(), 3, "capacity");
    }
}
