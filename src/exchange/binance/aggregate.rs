//! Building a longer timeframe from 1m bars on UTC boundaries (a 1h bar from the 60 minutes starting on the
//! hour), so a bar of the target timeframe is ready the moment its last minute closes.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use mcbot_stages::domain::{Candle, Symbol, Timeframe};

/// What one more minute did to its bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aggregated {
    /// The bucket is not finished yet.
    Pending,
    /// The bucket's last minute arrived and every minute was there: the target bar.
    Complete(Candle),
    /// The bucket's last minute arrived but minutes are missing: fetch the target bar another way.
    Incomplete {
        /// Open time of the bucket.
        bucket: DateTime<Utc>,
    },
}

/// Folds 1m bars into `target` bars per symbol.
#[derive(Debug)]
pub struct MinuteAggregator {
    target: Timeframe,
    minutes: HashMap<Symbol, BTreeMap<DateTime<Utc>, Candle>>,
}

impl MinuteAggregator {
    /// An aggregator to `target` (longer than 1m).
    pub fn new(target: Timeframe) -> Self {
        Self { target, minutes: HashMap::new() }
    }

    /// Open time of the target bar containing the minute opened at `t`.
    pub fn bucket_of(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        self.target.last_close(t)
    }

    /// Adds one closed 1m bar (in time order) and says whether it finished its bucket.
    pub fn push(&mut self, symbol: &Symbol, minute: Candle) -> Aggregated {
        let bucket = self.bucket_of(minute.open_time);
        let last_minute = bucket + self.target.duration() - Duration::minutes(1);
        let is_last = minute.open_time == last_minute;
        let held = self.minutes.entry(symbol.clone()).or_default();
        held.retain(|t, _| *t >= bucket);
        held.insert(minute.open_time, minute);
        if !is_last {
            return Aggregated::Pending;
        }
        let bars: Vec<Candle> = std::mem::take(held).into_values().collect();
        match combine(&bars, self.target.minutes() as usize) {
            Some(c) => Aggregated::Complete(c),
            None => Aggregated::Incomplete { bucket },
        }
    }
}

/// One bar from `n` consecutive minutes: first open, highest high, lowest low, last close, summed volume.
/// `None` unless exactly `n` contiguous minutes are given.
pub fn combine(minutes: &[Candle], n: usize) -> Option<Candle> {
    if minutes.len() != n || n == 0 {
        return None;
    }
    let contiguous = minutes.windows(2).all(|w| w[1].open_time - w[0].open_time == Duration::minutes(1));
    if !contiguous {
        return None;
    }
    let (first, last) = (minutes.first()?, minutes.last()?);
    Some(Candle {
        open_time: first.open_time,
        open: first.open,
        high: minutes.iter().map(|c| c.high).max()?,
        low: minutes.iter().map(|c| c.low).min()?,
        close: last.close,
        volume: minutes.iter().map(|c| c.volume).sum::<Decimal>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(t: DateTime<Utc>, o: i64, h: i64, l: i64, c: i64) -> Candle {
        Candle { open_time: t, open: o.into(), high: h.into(), low: l.into(), close: c.into(), volume: Decimal::ONE }
    }

    #[test]
    fn five_minutes_make_one_utc_aligned_bar() {
        let tf: Timeframe = "5m".parse().unwrap();
        let mut agg = MinuteAggregator::new(tf);
        let s = Symbol::new("BTCUSDT").unwrap();
        let t0 = DateTime::parse_from_rfc3339("2024-01-01T10:05:00Z").unwrap().to_utc();
        // A minute of the previous bucket is dropped, not mixed in.
        assert_eq!(agg.push(&s, minute(t0 - Duration::minutes(2), 1, 1, 1, 1)), Aggregated::Pending);
        let prices = [(10, 12, 9, 11), (11, 15, 10, 14), (14, 14, 8, 9), (9, 10, 9, 10), (10, 11, 10, 11)];
        let mut out = Aggregated::Pending;
        for (i, (o, h, l, c)) in prices.into_iter().enumerate() {
            out = agg.push(&s, minute(t0 + Duration::minutes(i as i64), o, h, l, c));
        }
        let Aggregated::Complete(bar) = out else { panic!("{out:?}") };
        assert_eq!(bar.open_time, t0);
        assert_eq!(
            (bar.open, bar.high, bar.low, bar.close, bar.volume),
            (10.into(), 15.into(), 8.into(), 11.into(), 5.into())
        );
    }

    #[test]
    fn a_missing_minute_is_reported() {
        let tf: Timeframe = "3m".parse().unwrap();
        let mut agg = MinuteAggregator::new(tf);
        let s = Symbol::new("BTCUSDT").unwrap();
        let t0 = DateTime::parse_from_rfc3339("2024-01-01T10:03:00Z").unwrap().to_utc();
        assert_eq!(agg.push(&s, minute(t0, 1, 1, 1, 1)), Aggregated::Pending);
        assert_eq!(agg.push(&s, minute(t0 + Duration::minutes(2), 1, 1, 1, 1)), Aggregated::Incomplete { bucket: t0 });
    }
}
