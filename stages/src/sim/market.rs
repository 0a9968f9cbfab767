use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

use crate::domain::{Candle, Symbol, Timeframe};

/// Parameters of the seeded random walk: the same seed gives the same market on every machine and every run,
/// which is what makes mock-mode runs and restarts reproducible.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomWalk {
    /// Seed of the whole market; each symbol derives its own stream from it.
    pub seed: u64,
    /// Open time of bar 0; bars before it do not exist.
    pub start: DateTime<Utc>,
    /// Per-bar volatility of log returns.
    pub bar_vol: f64,
    /// Price of bar 0 per symbol; symbols not listed start at a price derived from the seed.
    pub start_prices: HashMap<Symbol, Decimal>,
    /// Decimal places prices are rounded to (the tick).
    pub price_dp: u32,
}

/// Where simulated candles come from.
#[derive(Debug)]
pub enum MarketSource {
    /// Generated on demand from a seed.
    /// Only the closes are cached (8 bytes a bar), so even years of 1m bars stay small.
    RandomWalk(RandomWalk, Mutex<HashMap<Symbol, Vec<f64>>>),
    /// Replayed from recorded candles (e.g. a CSV), per symbol, ascending by open time.
    Replay(HashMap<Symbol, Vec<Candle>>),
}

impl MarketSource {
    /// A random-walk market.
    pub fn random_walk(params: RandomWalk) -> Self {
        MarketSource::RandomWalk(params, Mutex::new(HashMap::new()))
    }

    /// Up to `limit` candles of `symbol` whose close time is at or before `until`, oldest first.
    pub fn closed_until(&self, symbol: &Symbol, tf: Timeframe, until: DateTime<Utc>, limit: usize) -> Vec<Candle> {
        match self {
            MarketSource::Replay(series) => {
                let Some(all) = series.get(symbol) else { return Vec::new() };
                let end = all.partition_point(|c| c.close_time(tf) <= until);
                all[end.saturating_sub(limit)..end].to_vec()
            }
            MarketSource::RandomWalk(p, cache) => {
                let bars_closed = (until - p.start).num_minutes().div_euclid(i64::from(tf.minutes()));
                if bars_closed <= 0 {
                    return Vec::new();
                }
                let end = usize::try_from(bars_closed).unwrap_or(0);
                let start = end.saturating_sub(limit);
                let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
                let closes = cache.entry(symbol.clone()).or_default();
                let seed = symbol_seed(p, symbol);
                extend_walk(p, seed, symbol, closes, end);
                (start..end).map(|k| walk_candle(p, seed, tf, closes, k)).collect()
            }
        }
    }

    /// The price a market order gets at `now`: the open of the bar forming at `now` (the next open after the last
    /// close), or the last close when that bar is not known.
    pub fn price_at(&self, symbol: &Symbol, tf: Timeframe, now: DateTime<Utc>) -> Option<Decimal> {
        let forming_open = tf.last_close(now);
        let next = self.closed_until(symbol, tf, forming_open + tf.duration(), 1);
        match next.first() {
            Some(c) if c.open_time == forming_open => Some(c.open),
            _ => self.closed_until(symbol, tf, now, 1).first().map(|c| c.close),
        }
    }
}

fn symbol_seed(p: &RandomWalk, symbol: &Symbol) -> u64 {
    symbol.as_str().bytes().fold(p.seed ^ 0x9E37_79B9_7F4A_7C15, |h, b| splitmix(h ^ u64::from(b)))
}

fn start_price(p: &RandomWalk, seed: u64, symbol: &Symbol) -> f64 {
    p.start_prices.get(symbol).map_or_else(|| 20.0 + (seed % 50_000) as f64, |d| f64_of(*d))
}

/// Closes are rounded to the tick as they are generated, so the Decimal candles derived from them are exact.
fn extend_walk(p: &RandomWalk, seed: u64, symbol: &Symbol, closes: &mut Vec<f64>, len: usize) {
    let scale = 10f64.powi(i32::try_from(p.price_dp).unwrap_or(2));
    let tick = 1.0 / scale;
    let mut close = closes.last().copied().unwrap_or_else(|| start_price(p, seed, symbol));
    while closes.len() < len {
        let k = closes.len() as u64;
        // Uniform on [-sqrt3, sqrt3] has unit variance.
        let z = (noise(seed, k, 0) * 2.0 - 1.0) * 3f64.sqrt();
        close = ((close * (p.bar_vol * z).exp() * scale).round() / scale).max(tick);
        closes.push(close);
    }
}

fn walk_candle(p: &RandomWalk, seed: u64, tf: Timeframe, closes: &[f64], k: usize) -> Candle {
    let dp = p.price_dp;
    let dec = |x: f64| Decimal::from_f64(x).unwrap_or(Decimal::ONE).round_dp(dp);
    let open = if k == 0 { dec(closes[0]) } else { dec(closes[k - 1]) };
    let close = dec(closes[k]);
    let (o, c) = (f64_of(open), f64_of(close));
    let high = dec(o.max(c) * (1.0 + p.bar_vol * noise(seed, k as u64, 1) * 0.5)).max(open).max(close);
    let low = dec(o.min(c) * (1.0 - p.bar_vol * noise(seed, k as u64, 2) * 0.5)).min(open).min(close);
    Candle {
        open_time: p.start + tf.duration() * i32::try_from(k).unwrap_or(i32::MAX),
        open,
        high,
        low: low.max(Decimal::new(1, dp)),
        close,
        volume: Decimal::from(100 + (splitmix(seed ^ k as u64) % 900)),
    }
}

fn noise(seed: u64, k: u64, salt: u64) -> f64 {
    unit(splitmix(seed ^ splitmix(k.wrapping_mul(4) + salt)))
}

fn f64_of(d: Decimal) -> f64 {
    use rust_decimal::prelude::ToPrimitive;
    d.to_f64().unwrap_or(1.0)
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk() -> MarketSource {
        MarketSource::random_walk(RandomWalk {
            seed: 7,
            start: DateTime::from_timestamp(1_704_067_200, 0).unwrap(),
            bar_vol: 0.01,
            start_prices: HashMap::new(),
            price_dp: 2,
        })
    }

    #[test]
    fn walk_is_deterministic_sane_and_never_shows_the_forming_bar() {
        let tf: Timeframe = "1h".parse().unwrap();
        let s = Symbol::new("BTCUSDT").unwrap();
        let t0 = DateTime::from_timestamp(1_704_067_200, 0).unwrap();
        let a = walk().closed_until(&s, tf, t0 + chrono::Duration::minutes(30 * 60 + 59), 1000);
        let b = walk().closed_until(&s, tf, t0 + chrono::Duration::hours(30), 1000);
        assert_eq!(a.len(), 30, "bar 30 is still forming");
        assert_eq!(a, b);
        assert!(a.iter().all(Candle::is_sane));
        assert!(a.windows(2).all(|w| w[1].open == w[0].close && w[1].open_time - w[0].open_time == tf.duration()));
        let m = walk();
        let next_open = m.price_at(&s, tf, t0 + chrono::Duration::minutes(30 * 60 + 1)).unwrap();
        assert_eq!(next_open, a[29].close, "the forming bar opens at the last close");
    }
}
