//! Upbit's per-second request budget. Every answer carries `Remaining-Req: group=default; min=1800; sec=29`:
//! when `sec` reaches 0 the group is spent until the next second, and calling it anyway earns a 429 and, if
//! repeated, a 418 block. The limiter learns which group each endpoint belongs to from those headers, waits
//! out a spent second before the next call, honours 429 back-offs per group and stops everything during a block.
//! Time comes from the [`Clock`]; waiting goes through [`Pause`], so tests run on virtual time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use mcbot_stages::Clock;

/// Waits for a while. Production sleeps on tokio's timer; tests advance a manual clock instead.
#[async_trait]
pub trait Pause: Send + Sync {
    /// Returns after `d` has passed.
    async fn pause(&self, d: Duration);
}

/// Real waiting on tokio's timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioPause;

#[async_trait]
impl Pause for TokioPause {
    async fn pause(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// A parsed `Remaining-Req` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemainingReq {
    /// Rate-limit group, e.g. `default`, `order`, `candles`.
    pub group: String,
    /// Requests left in the current second.
    pub sec: u32,
}

/// Parses `group=default; min=1800; sec=29` (split on `;`, then `=`; `min` is deprecated and ignored).
pub fn parse_remaining_req(header: &str) -> Option<RemainingReq> {
    let mut group = None;
    let mut sec = None;
    for part in header.split(';') {
        let Some((k, v)) = part.split_once('=') else { continue };
        match k.trim() {
            "group" => group = Some(v.trim().to_owned()),
            "sec" => sec = v.trim().parse().ok(),
            _ => {}
        }
    }
    Some(RemainingReq { group: group?, sec: sec? })
}

/// What the limiter says before a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Go now.
    Go,
    /// Wait this long first (the group's second is spent, or a 429 back-off runs).
    Wait(Duration),
    /// A block (418) runs for this long: send nothing.
    Banned(Duration),
}

#[derive(Debug, Default)]
struct State {
    group_of: HashMap<&'static str, String>,
    spent_until: HashMap<String, DateTime<Utc>>,
    banned_until: Option<DateTime<Utc>>,
}

/// Per-group budget keeper, shared by all calls of one client.
pub struct RateLimiter {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

fn to_std(d: TimeDelta) -> Duration {
    d.to_std().unwrap_or_default()
}

impl RateLimiter {
    /// A limiter with nothing learnt yet.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock, state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn group<'a>(state: &'a State, endpoint: &'static str) -> &'a str {
        state.group_of.get(endpoint).map_or(endpoint, String::as_str)
    }

    /// May `endpoint` be called now?
    pub fn gate(&self, endpoint: &'static str) -> Gate {
        let now = self.clock.now();
        let st = self.lock();
        if let Some(until) = st.banned_until.filter(|u| *u > now) {
            return Gate::Banned(to_std(until - now));
        }
        match st.spent_until.get(Self::group(&st, endpoint)) {
            Some(until) if *until > now => Gate::Wait(to_std(*until - now)),
            _ => Gate::Go,
        }
    }

    /// Records the `Remaining-Req` of an answer from `endpoint`: learns its group, and marks the group spent until
    /// the next whole second when `sec` is 0.
    pub fn observe(&self, endpoint: &'static str, header: Option<&str>) {
        let Some(rr) = header.and_then(parse_remaining_req) else { return };
        let now = self.clock.now();
        let mut st = self.lock();
        if rr.sec == 0 {
            let next_second = now.duration_trunc(TimeDelta::seconds(1)).unwrap_or(now) + TimeDelta::seconds(1);
            st.spent_until.insert(rr.group.clone(), next_second);
        }
        st.group_of.insert(endpoint, rr.group);
    }

    /// A 429 from `endpoint`: its group rests for `retry_after`.
    pub fn throttled(&self, endpoint: &'static str, retry_after: Duration) {
        let until = self.clock.now() + TimeDelta::from_std(retry_after).unwrap_or(TimeDelta::seconds(1));
        let mut st = self.lock();
        let group = Self::group(&st, endpoint).to_owned();
        let entry = st.spent_until.entry(group).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// A 418: every request stops for `d`.
    pub fn banned(&self, d: Duration) {
        let until = self.clock.now() + TimeDelta::from_std(d).unwrap_or(TimeDelta::seconds(60));
        let mut st = self.lock();
        st.banned_until = Some(st.banned_until.map_or(until, |u| u.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcbot_stages::ManualClock;

    fn at(ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock::new(DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()))
    }

    #[test]
    fn parses_the_header() {
        assert_eq!(
            parse_remaining_req("group=default; min=1800; sec=29"),
            Some(RemainingReq { group: "default".into(), sec: 29 })
        );
        assert_eq!(parse_remaining_req("group=order;sec=0"), Some(RemainingReq { group: "order".into(), sec: 0 }));
        assert_eq!(parse_remaining_req("garbage"), None);
        assert_eq!(parse_remaining_req("group=x; sec=-1"), None);
    }

    #[test]
    fn a_spent_second_waits_for_the_next_one_per_group() {
        let clock = at(250);
        let l = RateLimiter::new(clock.clone());
        assert_eq!(l.gate("accounts"), Gate::Go);
        l.observe("accounts", Some("group=default; min=1800; sec=0"));
        l.observe("ticker", Some("group=ticker; min=1800; sec=5"));
        assert_eq!(l.gate("accounts"), Gate::Wait(Duration::from_millis(750)));
        assert_eq!(l.gate("ticker"), Gate::Go, "other groups are not held back");
        // An endpoint learnt later to be in the same group waits too.
        l.observe("order", Some("group=default; sec=3"));
        assert_eq!(l.gate("order"), Gate::Wait(Duration::from_millis(750)));
        clock.advance(TimeDelta::milliseconds(750));
        assert_eq!(l.gate("accounts"), Gate::Go);
    }

    #[test]
    fn throttle_and_ban() {
        let clock = at(0);
        let l = RateLimiter::new(clock.clone());
        l.throttled("candles", Duration::from_secs(2));
        assert_eq!(l.gate("candles"), Gate::Wait(Duration::from_secs(2)));
        l.banned(Duration::from_secs(30));
        assert_eq!(l.gate("ticker"), Gate::Banned(Duration::from_secs(30)));
        clock.advance(TimeDelta::seconds(30));
        assert_eq!(l.gate("ticker"), Gate::Go);
    }
}
