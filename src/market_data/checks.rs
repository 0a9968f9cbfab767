//! Data-quality checks of a candle series: gaps (bars missing between two stored bars), duplicates (a bar
//! received for an open time already held), OHLC sanity and alignment on the timeframe's UTC grid. Bad bars
//! are refused before they reach the store; gaps are reported, never filled (a gap is usually real: no trades).

use std::collections::BTreeSet;

use chrono::{DateTime, DurationRound, Utc};
use mcbot_stages::domain::{Candle, Timeframe};
use serde::Serialize;

/// A run of missing bars.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// Open time of the first missing bar.
    pub from: DateTime<Utc>,
    /// Open time of the next bar present.
    pub until: DateTime<Utc>,
    /// Number of bars missing.
    pub missing: i64,
}

/// What the checks found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Quality {
    /// Missing runs in the stored series, oldest first.
    pub gaps: Vec<Gap>,
    /// Total bars missing in those gaps.
    pub missing_bars: i64,
    /// Bars received for an open time already held (in the store or earlier in the same batch); the first kept.
    pub duplicates: usize,
    /// Open times of bars refused because their OHLC is not sane (low > 0, low <= open/close <= high, volume >= 0).
    pub insane: Vec<DateTime<Utc>>,
    /// Open times of bars refused because they are not on the timeframe's UTC grid.
    pub misaligned: Vec<DateTime<Utc>>,
}

impl Quality {
    /// True when nothing at all was found.
    pub fn is_clean(&self) -> bool {
        self.gaps.is_empty() && self.duplicates == 0 && self.insane.is_empty() && self.misaligned.is_empty()
    }
}

/// True when `t` is a bar open time of `tf`.
pub fn is_aligned(t: DateTime<Utc>, tf: Timeframe) -> bool {
    t.duration_trunc(tf.duration()).is_ok_and(|a| a == t)
}

/// Splits incoming bars into those fit to store (sorted, unique, sane, aligned, not already in `held`) and the
/// findings about the rest, which are added to `q`.
pub fn screen(incoming: Vec<Candle>, tf: Timeframe, held: &BTreeSet<DateTime<Utc>>, q: &mut Quality) -> Vec<Candle> {
    let mut seen: BTreeSet<DateTime<Utc>> = BTreeSet::new();
    let mut out = Vec::with_capacity(incoming.len());
    for c in incoming {
        if !is_aligned(c.open_time, tf) {
            q.misaligned.push(c.open_time);
        } else if !c.is_sane() {
            q.insane.push(c.open_time);
        } else if held.contains(&c.open_time) || !seen.insert(c.open_time) {
            q.duplicates += 1;
        } else {
            out.push(c);
        }
    }
    out.sort_by_key(|c| c.open_time);
    out
}

/// The gaps of an ascending series.
pub fn gaps(bars: &[Candle], tf: Timeframe) -> Vec<Gap> {
    let step = tf.duration();
    bars.windows(2)
        .filter_map(|w| {
            let expected = w[0].open_time + step;
            (w[1].open_time > expected).then(|| Gap {
                from: expected,
                until: w[1].open_time,
                missing: (w[1].open_time - expected).num_minutes() / i64::from(tf.minutes()),
            })
        })
        .collect()
}

/// Checks a whole series as stored: gaps, plus any duplicate, insane or misaligned bar it holds.
pub fn check_series(bars: &[Candle], tf: Timeframe) -> Quality {
    let mut q = Quality::default();
    let mut sorted = bars.to_vec();
    sorted.sort_by_key(|c| c.open_time);
    let clean = screen(sorted, tf, &BTreeSet::new(), &mut q);
    q.gaps = gaps(&clean, tf);
    q.missing_bars = q.gaps.iter().map(|g| g.missing).sum();
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn bar(min: i64) -> Candle {
        Candle {
            open_time: DateTime::from_timestamp(1_700_000_000 - 1_700_000_000 % 3600 + min * 60, 0).unwrap(),
            open: dec!(10),
            high: dec!(11),
            low: dec!(9),
            close: dec!(10.5),
            volume: dec!(1),
        }
    }

    #[test]
    fn finds_gaps_duplicates_insane_and_misaligned_bars() {
        let tf: Timeframe = "5m".parse().unwrap();
        let mut insane = bar(20);
        insane.high = dec!(1);
        let bars = vec![bar(0), bar(5), bar(5), bar(20), bar(25), bar(26), bar(40), insane];
        let q = check_series(&bars, tf);
        assert_eq!(q.duplicates, 1);
        assert_eq!(q.misaligned.len(), 1);
        assert_eq!(q.insane.len(), 1);
        assert_eq!(q.gaps.len(), 2);
        assert_eq!((q.gaps[0].from, q.gaps[0].until, q.gaps[0].missing), (bar(10).open_time, bar(20).open_time, 2));
        assert_eq!(q.missing_bars, 4);
        assert!(!q.is_clean());
        assert!(check_series(&[bar(0), bar(5)], tf).is_clean());
    }
}
