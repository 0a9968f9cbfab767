//! Seeded synthetic price series with known properties, for tests with known answers: a pure random walk (no
//! strategy can have a real edge on it) and a trending regime-switching walk (a trend follower has a planted
//! edge). Deterministic for a seed on every platform (own PRNG, no dependency on a crate's stream).

use chrono::DateTime;
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

use crate::domain::Candle;
use crate::strategy::{Ohlcv, decimal_to_f64};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSpec {
    /// Number of bars.
    pub bars: usize,
    /// PRNG seed.
    pub seed: u64,
    /// Per-bar log-return standard deviation.
    pub vol: f64,
    /// Per-bar drift magnitude during trends; its sign flips at random regime changes. 0 gives a driftless walk.
    pub trend: f64,
    /// Mean regime length in bars (geometric), when `trend` is non-zero.
    pub regime: f64,
    /// Bar length in seconds (timestamps only).
    pub bar_seconds: i64,
}

impl Default for SeriesSpec {
    fn default() -> Self {
        Self { bars: 1000, seed: 1, vol: 0.01, trend: 0.0, regime: 200.0, bar_seconds: 3600 }
    }
}

/// SplitMix64: tiny, fast, good enough for test data, and fully specified here.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Rounds to 4 decimals through `Decimal`, so the f64 columns equal what candles (and a CSV) would give.
fn tick(x: f64) -> f64 {
    decimal_to_f64(Decimal::from_f64(x).unwrap_or(Decimal::ONE).round_dp(4))
}

/// Columns for `spec`: log-price random walk from 100 with optional trending regimes; open = previous close
/// with a small gap, wicks beyond open/close; prices on a 1e-4 tick.
pub fn ohlcv(spec: &SeriesSpec) -> Ohlcv {
    let mut rng = Rng::new(spec.seed);
    let mut o = Ohlcv::with_capacity(spec.bars);
    let mut log_p = 100f64.ln();
    let mut sign = 1.0;
    let mut prev_close = 100.0;
    for t in 0..spec.bars {
        if spec.trend != 0.0 && rng.uniform() < 1.0 / spec.regime.max(1.0) {
            sign = -sign;
        }
        log_p += sign * spec.trend + spec.vol * rng.normal();
        let close = tick(log_p.exp());
        let open = if t == 0 { close } else { tick(prev_close * (1.0 + 0.1 * spec.vol * rng.normal())) };
        let high = tick(open.max(close) * (1.0 + 0.5 * spec.vol * rng.normal().abs()));
        let low = tick(open.min(close) * (1.0 - 0.5 * spec.vol * rng.normal().abs()));
        o.time.push(t as i64 * spec.bar_seconds);
        o.open.push(open);
        o.high.push(high.max(open).max(close));
        o.low.push(low.min(open).min(close));
        o.close.push(close);
        o.volume.push(1.0);
        prev_close = close;
    }
    o
}

/// The same series as candles (exact decimals of the 1e-4-tick prices).
pub fn candles(spec: &SeriesSpec) -> Vec<Candle> {
    let o = ohlcv(spec);
    let d = |x: f64| Decimal::from_f64(x).unwrap_or(Decimal::ZERO).round_dp(4);
    (0..o.len())
        .map(|t| Candle {
            open_time: DateTime::from_timestamp(o.time[t], 0).unwrap_or_default(),
            open: d(o.open[t]),
            high: d(o.high[t]),
            low: d(o.low[t]),
            close: d(o.close[t]),
            volume: Decimal::ONE,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_sane_and_equal_as_candles() {
        let spec = SeriesSpec { bars: 500, seed: 3, trend: 0.002, ..Default::default() };
        let (a, b) = (ohlcv(&spec), ohlcv(&spec));
        assert_eq!(a, b);
        assert!(candles(&spec).iter().all(Candle::is_sane));
        assert_eq!(Ohlcv::from_candles(&candles(&spec)), a);
        assert_ne!(ohlcv(&SeriesSpec { seed: 4, ..spec }), a);
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut r = Rng::new(9);
        let x: Vec<f64> = (0..20_000).map(|_| r.normal()).collect();
        let m = x.iter().sum::<f64>() / x.len() as f64;
        let v = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / x.len() as f64;
        assert!(m.abs() < 0.03 && (v - 1.0).abs() < 0.05, "{m} {v}");
    }
}
