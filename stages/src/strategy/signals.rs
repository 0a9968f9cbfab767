//! The vectorised face of a strategy: the same rule as its [`Strategy::targets`], computed for every bar at once
//! as entry/exit flags, which is what the fast backtest kernel and the parameter sweeps consume.
//!
//! A strategy that implements [`SignalRule`] promises that, replayed bar by bar through the event-driven backtest
//! (`backtest::event`), its `targets` produce exactly the trades its `signals` produce in the kernel. Both faces
//! call the same indicator functions; the tests of each strategy check the promise.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::Strategy;
use crate::domain::Candle;

/// OHLCV as columns of f64, the layout the kernel and the indicators want. Built once at the edge from candles
/// or a file; money stays `Decimal` everywhere else.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ohlcv {
    /// Bar open time, seconds since the Unix epoch (UTC).
    pub time: Vec<i64>,
    /// Opening prices.
    pub open: Vec<f64>,
    /// Highest prices.
    pub high: Vec<f64>,
    /// Lowest prices.
    pub low: Vec<f64>,
    /// Closing prices.
    pub close: Vec<f64>,
    /// Base volume.
    pub volume: Vec<f64>,
}

impl Ohlcv {
    /// Converts candles (exact decimals) to columns, each price correctly rounded (see [`decimal_to_f64`]), so
    /// the columns equal those parsed from the same decimal text in a file.
    pub fn from_candles(candles: &[Candle]) -> Self {
        let mut o = Self::with_capacity(candles.len());
        for c in candles {
            o.time.push(c.open_time.timestamp());
            o.open.push(decimal_to_f64(c.open));
            o.high.push(decimal_to_f64(c.high));
            o.low.push(decimal_to_f64(c.low));
            o.close.push(decimal_to_f64(c.close));
            o.volume.push(decimal_to_f64(c.volume));
        }
        o
    }

    /// Empty columns with room for `n` bars.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            time: Vec::with_capacity(n),
            open: Vec::with_capacity(n),
            high: Vec::with_capacity(n),
            low: Vec::with_capacity(n),
            close: Vec::with_capacity(n),
            volume: Vec::with_capacity(n),
        }
    }

    /// Number of bars: the shortest of time, close and every column that was read (an empty column was left
    /// out by projection, see [`Columns`]), so a malformed value never indexes out of bounds.
    pub fn len(&self) -> usize {
        [&self.open, &self.high, &self.low, &self.volume]
            .iter()
            .map(|c| c.len())
            .filter(|l| *l > 0)
            .fold(self.time.len().min(self.close.len()), usize::min)
    }

    /// True when every column `needs` names was read (time and close always are).
    pub fn has(&self, needs: Columns) -> bool {
        let n = self.len();
        let read = |c: &Vec<f64>| c.len() >= n;
        (!needs.open || read(&self.open))
            && (!needs.range || (read(&self.high) && read(&self.low)))
            && (!needs.volume || read(&self.volume))
    }

    /// True when there are no bars.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of bars `range` (validation splits and quick-filter windows backtest sub-periods).
    pub fn slice(&self, range: std::ops::Range<usize>) -> Self {
        let r = range.start.min(self.len())..range.end.min(self.len());
        let cut = |c: &[f64]| if c.is_empty() { Vec::new() } else { c[r.clone()].to_vec() };
        Self {
            time: self.time[r.clone()].to_vec(),
            open: cut(&self.open),
            high: cut(&self.high),
            low: cut(&self.low),
            close: self.close[r.clone()].to_vec(),
            volume: cut(&self.volume),
        }
    }

    /// Bar `t`'s open time as a UTC instant (for trade lists).
    pub fn datetime(&self, t: usize) -> Option<DateTime<Utc>> {
        self.time.get(t).and_then(|s| DateTime::from_timestamp(*s, 0))
    }
}

/// The columns a run reads besides time and close. Loaders read only these (projection): a sweep of a
/// close-only strategy neither decodes nor holds open, high, low and volume. A column not read stays empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    /// Opening prices (next-open fills, gap rules).
    pub open: bool,
    /// Highs and lows (intrabar stops, channel and range rules).
    pub range: bool,
    /// Volumes.
    pub volume: bool,
}

impl Columns {
    /// Every column.
    pub const ALL: Self = Self { open: true, range: true, volume: true };
    /// Time and close only.
    pub const CLOSE: Self = Self { open: false, range: false, volume: false };

    /// The columns either of two readers needs.
    pub fn and(self, o: Self) -> Self {
        Self { open: self.open || o.open, range: self.range || o.range, volume: self.volume || o.volume }
    }
}

/// Entry and exit flags per bar, decided at that bar's close.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// Go long (ignored while already long).
    pub entries: Vec<bool>,
    /// Go flat (ignored while already flat).
    pub exits: Vec<bool>,
    /// Fraction of available cash to commit on an entry at each bar (volatility-scaled strategies); `None`
    /// means all of it, computed so that it is bit for bit the reference spec's all-in sizing.
    pub weights: Option<Vec<f64>>,
}

impl Signals {
    /// All-false flags for `n` bars.
    pub fn none(n: usize) -> Self {
        Self { entries: vec![false; n], exits: vec![false; n], weights: None }
    }
}

/// A strategy whose rule can also be evaluated over a whole series at once.
pub trait SignalRule: Strategy {
    /// Entry/exit flags for every bar of one symbol; flag `t` uses bars `0..=t` only.
    fn signals(&self, bars: &Ohlcv) -> Signals;
}

/// Crossing flags of two series: `up[t]` when `a` moves from `<= b` at `t-1` to `> b` at `t`, `down[t]` when it
/// moves from `>= b` to `< b` (the reference spec's rule; a comparison with `NaN` is false).
pub fn crossings(a: &[f64], b: &[f64]) -> (Vec<bool>, Vec<bool>) {
    let n = a.len().min(b.len());
    let mut up = vec![false; n];
    let mut down = vec![false; n];
    for t in 1..n {
        up[t] = a[t] > b[t] && a[t - 1] <= b[t - 1];
        down[t] = a[t] < b[t] && a[t - 1] >= b[t - 1];
    }
    (up, down)
}

/// Exact decimal to the nearest f64 (correctly rounded, as Rust's and Python's float parsers are). For the usual
/// price (mantissa below 2^53, at most 22 decimals) it is one IEEE division of two exact values, which is
/// correctly rounded; otherwise it goes through the decimal text. `rust_decimal`'s own `to_f64` adds the
/// integer and fraction parts separately and can be one ulp off, which would move an SMA tie.
pub fn decimal_to_f64(d: Decimal) -> f64 {
    const EXACT: u128 = 1 << 53;
    let m = d.mantissa().unsigned_abs();
    let scale = d.scale();
    if m < EXACT && scale <= 22 {
        let v = m as f64 / 10f64.powi(scale as i32);
        if d.is_sign_negative() { -v } else { v }
    } else {
        d.to_string().parse().unwrap_or(f64::NAN)
    }
}

/// The last `k` closes as f64 (fewer when there is less history): strategies read only the tail they need, so a
/// bar-by-bar replay does not convert the whole history at every bar.
pub fn tail_closes(candles: &[Candle], k: usize) -> Vec<f64> {
    candles[candles.len().saturating_sub(k)..].iter().map(|c| decimal_to_f64(c.close)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn decimal_to_f64_is_correctly_rounded() {
        for s in [
            "2623.79",
            "0.00012345",
            "-1.5",
            "19999.99",
            "0.1",
            "1e-28",
            "79228162514264337593543950335",
            "12345678901234567.891",
        ] {
            let d = Decimal::from_str(s).or_else(|_| Decimal::from_scientific(s)).unwrap();
            let want: f64 = d.to_string().parse().unwrap();
            assert_eq!(decimal_to_f64(d).to_bits(), want.to_bits(), "{s}");
        }
    }

    #[test]
    fn crossings_follow_the_spec_including_ties() {
        let a = [1.0, 2.0, 2.0, 1.0, f64::NAN, 3.0];
        let b = [2.0, 1.0, 2.0, 2.0, 2.0, 2.0];
        let (up, down) = crossings(&a, &b);
        assert_eq!(up, vec![false, true, false, false, false, false]);
        // t=2: tie (not <), t=3: from tie (>=) to below -> down; t=5: previous NaN -> no cross
        assert_eq!(down, vec![false, false, false, true, false, false]);
    }
}
