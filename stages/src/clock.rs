//! The `Clock` seam: every time-dependent decision asks it, so tests and backtests run on virtual time.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// Source of "now" for the whole bot; injected so schedules, freshness checks and reports are replayable.
pub trait Clock: Send + Sync {
    /// The current instant in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// Wall-clock time, for production.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Wall-clock time shifted by a fixed offset: a replayed candle series runs on it, so its bars arrive at the pace
/// of real time yet are fresh by the data's own dates, and the scheduler's cron times map onto its bar closes.
#[derive(Debug, Clone, Copy)]
pub struct ShiftedClock {
    offset: Duration,
}

impl ShiftedClock {
    /// Wall time plus `offset`.
    pub fn new(offset: Duration) -> Self {
        Self { offset }
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}

/// A clock that only moves when told to, so tests never sleep for real.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// Starts the clock at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self { now: Mutex::new(start) }
    }

    /// Jumps to `t`; time may only move forward, as it does in production.
    pub fn set(&self, t: DateTime<Utc>) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if t > *now {
            *now = t;
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let c = ManualClock::new(t0);
        c.advance(Duration::minutes(5));
        assert_eq!(c.now(), t0 + Duration::minutes(5));
        c.set(t0);
        assert_eq!(c.now(), t0 + Duration::minutes(5), "set() never moves back");
    }
}
