use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, DurationRound, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A bar length. Bars are aligned on UTC boundaries (the hour, midnight) as exchanges align them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timeframe {
    minutes: u32,
}

/// Why a string is not a timeframe.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid timeframe {0:?}: expected one of 1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h, 1d")]
pub struct TimeframeError(pub String);

impl Timeframe {
    const ALLOWED: [(&'static str, u32); 11] = [
        ("1m", 1),
        ("3m", 3),
        ("5m", 5),
        ("15m", 15),
        ("30m", 30),
        ("1h", 60),
        ("2h", 120),
        ("4h", 240),
        ("6h", 360),
        ("12h", 720),
        ("1d", 1440),
    ];

    /// Builds a timeframe from minutes, if it is one exchanges offer.
    pub fn from_minutes(minutes: u32) -> Result<Self, TimeframeError> {
        Self::ALLOWED
            .iter()
            .find(|(_, m)| *m == minutes)
            .map(|_| Self { minutes })
            .ok_or_else(|| TimeframeError(format!("{minutes}m")))
    }

    /// Bar length in minutes.
    pub fn minutes(self) -> u32 {
        self.minutes
    }

    /// Bar length.
    pub fn duration(self) -> Duration {
        Duration::minutes(i64::from(self.minutes))
    }

    /// Bars per year, for annualising statistics.
    pub fn bars_per_year(self) -> f64 {
        365.0 * 24.0 * 60.0 / f64::from(self.minutes)
    }

    /// The close time of the last bar that has closed at `now` (the open time of the bar forming at `now`).
    pub fn last_close(self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.duration_trunc(self.duration()).unwrap_or(now)
    }

    /// The six-field cron expression (with seconds) that fires `delay_secs` after every bar close.
    pub fn cron_after_close(self, delay_secs: u32) -> String {
        let (s, m) = (delay_secs % 60, (delay_secs / 60) % 60);
        match self.minutes {
            n if n < 60 => format!("{s} {m}/{n} * * * *"),
            1440 => format!("{s} {m} 0 * * *"),
            n => format!("{s} {m} */{} * * *", n / 60),
        }
    }
}

impl FromStr for Timeframe {
    type Err = TimeframeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALLOWED
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, minutes)| Self { minutes: *minutes })
            .ok_or_else(|| TimeframeError(s.to_owned()))
    }
}

impl TryFrom<String> for Timeframe {
    type Error = TimeframeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Timeframe> for String {
    fn from(t: Timeframe) -> String {
        t.to_string()
    }
}

impl fmt::Display for Timeframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::ALLOWED.iter().find(|(_, m)| *m == self.minutes).map_or("?", |(n, _)| n);
        f.write_str(name)
    }
}

/// One OHLCV bar, keyed by its open time as exchanges key it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candle {
    /// Bar open time (UTC).
    pub open_time: DateTime<Utc>,
    /// First trade price.
    pub open: Decimal,
    /// Highest trade price.
    pub high: Decimal,
    /// Lowest trade price.
    pub low: Decimal,
    /// Last trade price.
    pub close: Decimal,
    /// Traded base volume.
    pub volume: Decimal,
}

impl Candle {
    /// The instant the bar closes; a bar is usable only once this is in the past.
    pub fn close_time(&self, tf: Timeframe) -> DateTime<Utc> {
        self.open_time + tf.duration()
    }

    /// OHLC sanity: positive prices, high above and low below open and close. Exchange data is checked with
    /// this before any decision is based on it.
    pub fn is_sane(&self) -> bool {
        self.low > Decimal::ZERO
            && self.high >= self.open.max(self.close)
            && self.low <= self.open.min(self.close)
            && self.volume >= Decimal::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeframes_parse_and_print() {
        let tf: Timeframe = "4h".parse().unwrap();
        assert_eq!(tf.minutes(), 240);
        assert_eq!(tf.to_string(), "4h");
        assert!("7m".parse::<Timeframe>().is_err());
        assert_eq!(Timeframe::from_minutes(60).unwrap().to_string(), "1h");
    }

    #[test]
    fn last_close_truncates_to_the_bar_boundary() {
        let tf: Timeframe = "1h".parse().unwrap();
        let now = DateTime::parse_from_rfc3339("2024-03-01T10:59:59Z").unwrap().to_utc();
        assert_eq!(tf.last_close(now).to_rfc3339(), "2024-03-01T10:00:00+00:00");
    }

    #[test]
    fn cron_fires_after_each_close() {
        assert_eq!("1h".parse::<Timeframe>().unwrap().cron_after_close(5), "5 0 */1 * * *");
        assert_eq!("15m".parse::<Timeframe>().unwrap().cron_after_close(65), "5 1/15 * * * *");
        assert_eq!("1d".parse::<Timeframe>().unwrap().cron_after_close(0), "0 0 0 * * *");
    }
}

/// A snapshot of the order book, best levels first: bids descending, asks ascending, as (price, quantity).
/// Used to estimate slippage before an order and to fill paper orders by walking the levels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderBook {
    /// Buy levels, best (highest) first.
    pub bids: Vec<(Decimal, Decimal)>,
    /// Sell levels, best (lowest) first.
    pub asks: Vec<(Decimal, Decimal)>,
}
