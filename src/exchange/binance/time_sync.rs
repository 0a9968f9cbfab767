//! Server time as the adapter sees it: the injected clock plus a measured offset to Binance's clock, so signed
//! timestamps land inside recvWindow and weight windows line up with Binance's minutes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use mcbot_stages::Clock;

/// The injected clock corrected by the last measured offset to Binance's `serverTime`.
pub struct TimeSync {
    clock: Arc<dyn Clock>,
    offset_ms: AtomicI64,
    synced: AtomicBool,
}

impl TimeSync {
    /// Starts unsynced (offset zero).
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock, offset_ms: AtomicI64::new(0), synced: AtomicBool::new(false) }
    }

    /// Local time, from the injected clock.
    pub fn local_now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Estimated Binance time.
    pub fn server_now(&self) -> DateTime<Utc> {
        self.clock.now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Estimated Binance time in epoch milliseconds, as signed requests carry it.
    pub fn server_now_ms(&self) -> i64 {
        self.server_now().timestamp_millis()
    }

    /// The last measured offset (server minus local), in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// True once an offset was measured.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// Records a measurement: `server` was read between local instants `sent` and `received`; the offset is
    /// taken against their midpoint, which halves the error the round trip adds.
    pub fn record(&self, sent: DateTime<Utc>, received: DateTime<Utc>, server: DateTime<Utc>) {
        let mid = sent + (received - sent) / 2;
        let offset = (server - mid).num_milliseconds();
        self.offset_ms.store(offset, Ordering::Relaxed);
        metrics::gauge!(crate::metrics::names::EXCHANGE_CLOCK_OFFSET, "venue" => "binance").set(offset as f64 / 1000.0);
        self.synced.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcbot_stages::ManualClock;

    #[test]
    fn offset_is_measured_against_the_round_trip_midpoint() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let sync = TimeSync::new(Arc::new(ManualClock::new(t0)));
        assert!(!sync.is_synced());
        sync.record(t0, t0 + chrono::Duration::milliseconds(200), t0 + chrono::Duration::milliseconds(1_100));
        assert_eq!(sync.offset_ms(), 1_000);
        assert_eq!(sync.server_now_ms(), t0.timestamp_millis() + 1_000);
    }
}
