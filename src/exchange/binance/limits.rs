//! Request-weight budget, 429 back-off and 418 ban, kept in one place every request passes through before it
//! is sent. Binance bans an IP that keeps going after 429s, so the adapter stays under its own budget and, once
//! banned, sends nothing at all until the ban ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mcbot_stages::ports::{EventKind, NewEvent, Severity};

use super::errors::BinanceError;
use super::time_sync::TimeSync;

/// Callback for critical events (ban, refused credentials); the composition root wires it to the store.
pub type RiskHook = Arc<dyn Fn(NewEvent) + Send + Sync>;

/// Weight used and back-offs in force; read by metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitStatus {
    /// Start of the current weight window (a Binance minute).
    pub window_start: DateTime<Utc>,
    /// Weight used in it, as far as the adapter knows (its own requests or Binance's header, the larger).
    pub used: u32,
    /// The configured budget per minute.
    pub budget: u32,
    /// A 429 back-off in force until this instant.
    pub backoff_until: Option<DateTime<Utc>>,
    /// A 418 ban in force until this instant.
    pub banned_until: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct State {
    window: i64,
    used: u32,
    /// Weight of requests sent but not answered: Binance may or may not have counted them yet.
    in_flight: u32,
    backoff_until: Option<DateTime<Utc>>,
    banned_until: Option<DateTime<Utc>>,
}

/// A reservation of weight for one request; report the answer's weight header through it.
pub struct WeightPermit<'a> {
    limiter: &'a RateLimiter,
    weight: u32,
    done: bool,
}

impl WeightPermit<'_> {
    /// The answer arrived: fold in Binance's `X-MBX-USED-WEIGHT-1M` (if it sent one).
    pub fn answered(mut self, used_weight_header: Option<u32>) {
        self.done = true;
        self.limiter.observe(self.weight, used_weight_header);
    }
}

impl Drop for WeightPermit<'_> {
    fn drop(&mut self) {
        if !self.done {
            // No answer (transport failure or cancelled): still counted as used, no longer in flight.
            self.limiter.observe(self.weight, None);
        }
    }
}

/// The gate every Binance request passes: weight per minute on Binance's time, 429 back-off, 418 ban.
pub struct RateLimiter {
    time: Arc<TimeSync>,
    budget: u32,
    max_wait: Duration,
    state: Mutex<State>,
    hook: Option<RiskHook>,
}

const WINDOW_MS: i64 = 60_000;

impl RateLimiter {
    /// A limiter allowing `budget` weight per minute; waits longer than `max_wait` fail with `RateLimited`.
    pub fn new(time: Arc<TimeSync>, budget: u32, max_wait: Duration, hook: Option<RiskHook>) -> Self {
        Self {
            time,
            budget: budget.max(1),
            max_wait,
            state: Mutex::new(State {
                window: i64::MIN,
                used: 0,
                in_flight: 0,
                backoff_until: None,
                banned_until: None,
            }),
            hook,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a request of `weight` fits the budget, then reserves it. Fails at once while banned (no
    /// request may leave), and with `RateLimited` when the wait would exceed the configured maximum.
    /// Waiting is measured on the injected clock and slept with `tokio::time::sleep`. The permit stays "in
    /// flight" until the answer's weight header is observed through it (or it is dropped).
    pub async fn acquire(&self, weight: u32) -> Result<WeightPermit<'_>, BinanceError> {
        loop {
            let (wait, window) = {
                let mut s = self.lock();
                let now = self.time.server_now();
                if let Some(until) = s.banned_until {
                    if now < until {
                        return Err(BinanceError::Banned { until });
                    }
                    s.banned_until = None;
                }
                match s.backoff_until {
                    Some(until) if now < until => (until - now, None),
                    _ => {
                        s.backoff_until = None;
                        let ms = now.timestamp_millis();
                        let window = ms.div_euclid(WINDOW_MS);
                        if window != s.window {
                            s.window = window;
                            // Requests still in flight may be counted in the new window.
                            s.used = s.in_flight;
                        }
                        // A request heavier than the whole budget still goes, alone in a fresh window.
                        if s.used + weight <= self.budget || s.used == 0 {
                            s.used += weight;
                            s.in_flight += weight;
                            return Ok(WeightPermit { limiter: self, weight, done: false });
                        }
                        (chrono::Duration::milliseconds((window + 1) * WINDOW_MS - ms), Some(window))
                    }
                }
            };
            let wait = wait.to_std().unwrap_or(Duration::from_millis(1)).max(Duration::from_millis(1));
            if wait > self.max_wait {
                return Err(BinanceError::RateLimited { retry_after: wait });
            }
            tracing::debug!(wait_ms = wait.as_millis() as u64, weight, "waiting for the Binance weight budget");
            let before = self.time.local_now();
            tokio::time::sleep(wait).await;
            if self.time.local_now() == before {
                // The injected clock did not move while we slept (a manual test clock): the wait was served in
                // real time, so grant what it waited for instead of waiting forever.
                let mut s = self.lock();
                match window {
                    None => s.backoff_until = None,
                    Some(w) if s.window == w => s.used = s.in_flight,
                    Some(_) => {}
                }
            }
        }
    }

    /// Folds in Binance's own count (`X-MBX-USED-WEIGHT-1M`), which also counts other programs on this IP.
    /// Requests still in flight are added on top, since the header may not include them yet.
    fn observe(&self, weight: u32, header: Option<u32>) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(weight);
        let window = self.time.server_now().timestamp_millis().div_euclid(WINDOW_MS);
        if let Some(used) = header
            && window == s.window
        {
            s.used = s.used.max(used.saturating_add(s.in_flight));
        }
    }

    /// A 429: no request before `retry_after` has passed.
    pub fn on_rate_limited(&self, retry_after: Duration) {
        let until = self.time.server_now() + chrono::Duration::from_std(retry_after).unwrap_or_default();
        let mut s = self.lock();
        s.backoff_until = Some(s.backoff_until.map_or(until, |u| u.max(until)));
        tracing::warn!(%until, "Binance answered 429: backing off");
        self.raise(
            EventKind::RateLimited,
            Severity::Warning,
            format!("Binance answered 429: backing off until {until}"),
        );
    }

    /// A 418: nothing at all is sent until `until`, and a critical risk event is raised.
    pub fn on_banned(&self, until: DateTime<Utc>) {
        {
            let mut s = self.lock();
            s.banned_until = Some(s.banned_until.map_or(until, |u| u.max(until)));
        }
        tracing::error!(%until, "Binance banned this IP (418): all requests stop until the ban ends");
        let msg = format!("Binance banned this IP (HTTP 418) until {until}");
        self.raise(EventKind::Banned, Severity::Emergency, msg);
    }

    /// Reports a critical condition through the hook, if one is wired.
    pub fn raise(&self, kind: EventKind, severity: Severity, message: String) {
        if let Some(hook) = &self.hook {
            hook(
                NewEvent::new(self.time.local_now(), kind, severity, message)
                    .payload(serde_json::json!({"venue": "binance"}))
                    .dedup(format!("binance:{kind}")),
            );
        }
    }

    /// Current weight, back-off and ban, for metrics and tests.
    pub fn status(&self) -> LimitStatus {
        let s = self.lock();
        let window_start = DateTime::from_timestamp_millis(s.window.saturating_mul(WINDOW_MS)).unwrap_or_default();
        LimitStatus {
            window_start,
            used: s.used,
            budget: self.budget,
            backoff_until: s.backoff_until,
            banned_until: s.banned_until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcbot_stages::ManualClock;

    fn limiter(clock: Arc<ManualClock>, budget: u32) -> RateLimiter {
        RateLimiter::new(Arc::new(TimeSync::new(clock)), budget, Duration::from_secs(120), None)
    }

    /// 40 s into a minute, so 20 s later is the next weight window.
    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_080, 0).unwrap()
    }

    #[tokio::test]
    async fn budget_is_reserved_per_window_and_header_counts() {
        let clock = Arc::new(ManualClock::new(t0()));
        let l = limiter(clock.clone(), 10);
        for _ in 0..5 {
            l.acquire(2).await.unwrap().answered(None);
        }
        assert_eq!(l.status().used, 10);
        // The next one has to wait for the window to roll: with the clock frozen it would wait 20 s, so cap it.
        let short = RateLimiter::new(Arc::new(TimeSync::new(clock.clone())), 10, Duration::from_secs(1), None);
        for _ in 0..5 {
            short.acquire(2).await.unwrap().answered(None);
        }
        assert!(matches!(short.acquire(1).await, Err(BinanceError::RateLimited { .. })));
        clock.advance(chrono::Duration::seconds(20));
        l.acquire(2).await.unwrap().answered(Some(9));
        assert_eq!(l.status().used, 9, "other programs on the IP count too");
        // A request still in flight is added to what the header says (it may not be counted yet).
        let big = limiter(clock.clone(), 100);
        big.acquire(2).await.unwrap().answered(Some(50));
        let pending = big.acquire(1).await.unwrap();
        big.acquire(1).await.unwrap().answered(Some(52));
        assert_eq!(big.status().used, 53);
        drop(pending);
    }

    #[tokio::test(start_paused = true)]
    async fn a_frozen_test_clock_never_hangs_a_wait() {
        let clock = Arc::new(ManualClock::new(t0()));
        let l = limiter(clock.clone(), 2);
        l.acquire(2).await.unwrap().answered(None);
        l.on_rate_limited(Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        l.acquire(2).await.unwrap().answered(None);
        assert!(started.elapsed() >= Duration::from_secs(25), "served the back-off, then the window");
    }

    #[tokio::test]
    async fn a_ban_refuses_everything_until_it_ends_and_raises_an_event() {
        let clock = Arc::new(ManualClock::new(t0()));
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let hook: RiskHook = Arc::new(move |e| sink.lock().unwrap().push(e));
        let l = RateLimiter::new(Arc::new(TimeSync::new(clock.clone())), 100, Duration::from_secs(1), Some(hook));
        l.on_banned(t0() + chrono::Duration::seconds(120));
        assert!(matches!(l.acquire(1).await, Err(BinanceError::Banned { .. })));
        assert_eq!(events.lock().unwrap()[0].kind, mcbot_stages::ports::EventKind::Banned);
        clock.advance(chrono::Duration::seconds(120));
        assert!(l.acquire(1).await.is_ok());
    }
}
