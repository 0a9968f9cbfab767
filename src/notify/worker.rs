//! The delivery worker: sends the outbox's pending rows, channel by channel in id order, off the trading path.
//! A failed attempt is retried with exponential back-off, never before the channel's own `retry_after`; the head
//! of a channel waits for its retry and the rows behind it wait with it, so messages arrive in order. A row that
//! keeps failing is given up after its attempts and handed to the fallback channel.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use mcbot_stages::Clock;
use mcbot_stages::ports::{
    Channel, ChannelNotifier, Delivery, DeliveryStatus, DeliveryStore, FollowUp, Message, NewDelivery, NotifyErrorKind,
    Route, Severity, StoreError,
};

/// How failed attempts are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failure; doubled after each further one.
    pub base: Duration,
    /// Longest wait between two attempts (a channel's own `retry_after` may be longer and wins).
    pub max: Duration,
    /// Attempts before a delivery is given up (failed) and handed to the fallback channel.
    pub max_attempts: i32,
    /// Where a given-up message goes instead.
    pub fallback: Option<Channel>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { base: Duration::seconds(1), max: Duration::minutes(5), max_attempts: 20, fallback: Some(Channel::Log) }
    }
}

impl RetryPolicy {
    /// The wait after attempt `attempts` (1 = the first failed).
    pub fn backoff(&self, attempts: i32) -> Duration {
        let shift = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let ms = self.base.num_milliseconds().saturating_mul(1_i64 << shift);
        Duration::milliseconds(ms).min(self.max)
    }
}

/// When messages are grouped, repeated and escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowUpRules {
    /// Alerts of the same kind and severity waiting together whose times lie within this window of the first
    /// are sent as one message.
    pub group_window: Duration,
    /// An unacknowledged emergency is sent again this often.
    pub repeat_every: Duration,
    /// A warning whose condition is still active this long after its message is sent again as critical.
    pub escalate_after: Duration,
}

impl Default for FollowUpRules {
    fn default() -> Self {
        Self {
            group_window: Duration::seconds(60),
            repeat_every: Duration::minutes(5),
            escalate_after: Duration::minutes(30),
        }
    }
}

/// What one pass over a channel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Deliveries sent.
    pub sent: usize,
    /// When the channel's head is next due, if something is still pending.
    pub next_due: Option<DateTime<Utc>>,
}

/// How one attempt ended.
enum Attempt {
    Sent,
    /// Failed for good (refused, or out of attempts): the channel goes on with the next row.
    GivenUp,
    /// Failed; the channel waits until then.
    Later(DateTime<Utc>),
}

/// The lease that makes one worker of several processes (scheduler replicas, a `run-once` beside a scheduler)
/// the sender: without it two workers read the same pending row and the owner gets the message twice.
pub const WORKER_LEASE: &str = "notify-delivery-worker";

/// The worker's hold on [`WORKER_LEASE`], renewed before every attempt.
pub struct WorkerLease {
    /// Where the lease lives.
    pub store: Arc<crate::store::SqlStore>,
    /// This process (`host:pid`).
    pub holder: String,
    /// How long one renewal holds: longer than the slowest single attempt, so a live sender is never overtaken.
    pub ttl: Duration,
}

/// One message for several similar alerts: the first as it is, then a line for each of the others.
fn grouped_message(head: &Message, also: &[Delivery]) -> Message {
    let mut m = head.clone();
    m.title = format!("{} (+{} similar)", head.title, also.len());
    for d in also {
        let o = &d.new.message;
        let body = o.body.lines().collect::<Vec<_>>().join(" · ");
        if body.is_empty() {
            m.body.push_str(&format!("\n• {}", o.title));
        } else {
            m.body.push_str(&format!("\n• {} — {body}", o.title));
        }
    }
    m
}

/// Repeat `n` of an unacknowledged emergency.
fn repeat_of(d: &Delivery, n: i64, now: DateTime<Utc>) -> NewDelivery {
    let mut message = d.new.message.clone();
    message.title = format!("{} (repeat {n}, not acknowledged)", message.title);
    message.body.push_str("\n/ack or the Acknowledge button stops the repeats");
    NewDelivery {
        occurrence: i32::try_from(n).unwrap_or(i32::MAX),
        status: DeliveryStatus::Pending,
        resolves: false,
        note: Some(format!("repeat {n} of delivery {}", d.id)),
        message,
        created_at: now,
        follow_up: None,
        ..d.new.clone()
    }
}

/// A warning still active after `after`, sent again as critical.
fn escalation_of(d: &Delivery, after: Duration, now: DateTime<Utc>) -> NewDelivery {
    let mut message = d.new.message.clone();
    message.severity = Severity::Critical;
    message.title = format!("escalated: {}", message.title);
    message.body.push_str(&format!("\nstill active after {} min", after.num_minutes()));
    NewDelivery {
        occurrence: 1,
        status: DeliveryStatus::Pending,
        resolves: false,
        note: Some(format!("escalation of delivery {}", d.id)),
        message,
        created_at: now,
        follow_up: None,
        ..d.new.clone()
    }
}

/// Sends pending deliveries through the channel adapters.
pub struct DeliveryWorker {
    outbox: Arc<dyn DeliveryStore>,
    clock: Arc<dyn Clock>,
    notifiers: Vec<Arc<dyn ChannelNotifier>>,
    policy: RetryPolicy,
    lease: Option<WorkerLease>,
    rules: FollowUpRules,
}

impl DeliveryWorker {
    /// A worker over `outbox` for the channels of `notifiers` (rows of other channels stay pending).
    pub fn new(
        outbox: Arc<dyn DeliveryStore>,
        clock: Arc<dyn Clock>,
        notifiers: Vec<Arc<dyn ChannelNotifier>>,
        policy: RetryPolicy,
    ) -> Self {
        Self { outbox, clock, notifiers, policy, lease: None, rules: FollowUpRules::default() }
    }

    /// Sends only while holding [`WORKER_LEASE`] in `lease.store`, so of several processes on one database one
    /// sends at a time; another takes over when the holder stops renewing.
    pub fn with_lease(mut self, lease: WorkerLease) -> Self {
        self.lease = Some(lease);
        self
    }

    /// True when this worker may send now (it holds, or has just taken, the lease; or it has none to hold).
    /// A lease left by a process that died on this host (a `kill -9`, a restarted container) is freed at once:
    /// the messages would otherwise wait for it to run out.
    async fn leader(&self) -> Result<bool, StoreError> {
        let Some(l) = &self.lease else { return Ok(true) };
        if l.store.try_acquire_lease(WORKER_LEASE, &l.holder, self.clock.now(), l.ttl).await? {
            return Ok(true);
        }
        let Some(old) = l.store.lease_holder(WORKER_LEASE).await? else { return Ok(false) };
        let Some((host, pid)) = old.rsplit_once(':') else { return Ok(false) };
        let Ok(pid) = pid.parse::<u32>() else { return Ok(false) };
        use mcbot_schedules::Liveness;
        let claimant = mcbot_stages::ports::Claimant { pid, host: host.to_owned() };
        if !crate::liveness::OsLiveness::current().is_dead(&claimant) {
            return Ok(false);
        }
        tracing::info!(holder = %old, "the delivery worker's lease belongs to a process that is gone: taking it");
        l.store.release_lease(WORKER_LEASE, &old).await?;
        l.store.try_acquire_lease(WORKER_LEASE, &l.holder, self.clock.now(), l.ttl).await
    }

    /// Gives the lease up (at a clean stop), so another process sends without waiting for it to expire.
    pub async fn release(&self) {
        if let Some(l) = &self.lease
            && let Err(e) = l.store.release_lease(WORKER_LEASE, &l.holder).await
        {
            tracing::warn!("delivery worker lease not released: {e}");
        }
    }

    /// The same worker with other grouping, repeat and escalation times.
    pub fn with_rules(mut self, rules: FollowUpRules) -> Self {
        self.rules = rules;
        self
    }

    /// One pass over every channel (after recording the follow-ups that fell due); the earliest time something is
    /// due again.
    pub async fn pass(&self) -> Result<Pass, StoreError> {
        let follow = self.follow_ups().await?;
        let mut total = Pass { sent: 0, next_due: follow };
        for n in &self.notifiers {
            let p = self.pass_channel(n.as_ref()).await?;
            total.sent += p.sent;
            total.next_due = match (total.next_due, p.next_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(total)
    }

    /// Records the repeats and escalations that are due and closes the follow-ups that ended (their condition
    /// cleared, or a newer message took over); the earliest time another falls due.
    pub async fn follow_ups(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let open = self.outbox.open_follow_ups(512).await?;
        if open.is_empty() {
            return Ok(None);
        }
        let now = self.clock.now();
        // One follow-up per condition and channel: the oldest escalates (so repeats of a warning after its
        // cooldown do not put escalation off), the newest emergency repeats (an older one is superseded).
        let mut keep: HashMap<(Channel, FollowUp, String), i64> = HashMap::new();
        for d in &open {
            let (Some(f), Some(k)) = (d.new.follow_up, d.new.fatigue_key.clone()) else { continue };
            let slot = keep.entry((d.new.channel, f, k)).or_insert(d.id);
            if f == FollowUp::Repeat {
                *slot = (*slot).max(d.id);
            }
        }
        let mut next: Option<DateTime<Utc>> = None;
        let mut rows = Vec::new();
        for d in open {
            let Some(f) = d.new.follow_up else { continue };
            if let Some(k) = d.new.fatigue_key.as_deref() {
                let superseded = keep.get(&(d.new.channel, f, k.to_owned())).is_some_and(|id| *id != d.id);
                if superseded || self.outbox.resolved_after(d.new.channel, k, d.id).await? {
                    self.outbox.close_follow_up(d.id, now).await?;
                    continue;
                }
            }
            match f {
                FollowUp::Repeat => {
                    let every = self.rules.repeat_every.max(Duration::seconds(1));
                    let n = (now - d.new.created_at).num_milliseconds() / every.num_milliseconds();
                    if n >= 1 {
                        rows.push(repeat_of(&d, n, now));
                    }
                    let due = d.new.created_at + every * i32::try_from(n.max(0) + 1).unwrap_or(i32::MAX);
                    next = Some(next.map_or(due, |t| t.min(due)));
                }
                FollowUp::Escalate => {
                    let due = d.new.created_at + self.rules.escalate_after;
                    if now >= due {
                        rows.push(escalation_of(&d, now - d.new.created_at, now));
                        self.outbox.close_follow_up(d.id, now).await?;
                    } else {
                        next = Some(next.map_or(due, |t| t.min(due)));
                    }
                }
            }
        }
        // Idempotent: a repeat number or an escalation recorded before is not recorded twice.
        self.outbox.enqueue(rows).await?;
        Ok(next)
    }

    /// Sends the due deliveries of one channel in id order, stopping at the first that is not due or fails.
    /// Another process holding the worker lease makes this a pass that sends nothing.
    pub async fn pass_channel(&self, n: &dyn ChannelNotifier) -> Result<Pass, StoreError> {
        let mut sent = 0;
        loop {
            let batch = self.outbox.pending(n.channel(), 32).await?;
            if batch.is_empty() {
                return Ok(Pass { sent, next_due: None });
            }
            let mut i = 0;
            while let Some(d) = batch.get(i) {
                let now = self.clock.now();
                if d.next_attempt_at > now {
                    return Ok(Pass { sent, next_due: Some(d.next_attempt_at) });
                }
                // Renewed before each attempt; lost, this process stops sending and the holder goes on.
                if !self.leader().await? {
                    return Ok(Pass { sent, next_due: None });
                }
                let group = self.group(&batch[i..], now);
                match self.attempt(n, d, &batch[i + 1..i + group]).await? {
                    Attempt::Sent => {
                        sent += group;
                        i += group;
                    }
                    // Only the head was given up: the rows grouped with it come next, on their own.
                    Attempt::GivenUp => i += 1,
                    Attempt::Later(next) => return Ok(Pass { sent, next_due: Some(next) }),
                }
            }
        }
    }

    /// How many rows from the head of `rows` go out as one message: the head and the alerts right behind it of
    /// the same kind and severity, due, never tried, recorded within the group window of the head.
    fn group(&self, rows: &[Delivery], now: DateTime<Utc>) -> usize {
        let Some(head) = rows.first() else { return 0 };
        let groupable =
            |d: &Delivery| d.new.route == Route::Alerts && d.new.message.image_png.is_none() && !d.new.resolves;
        if !groupable(head) || self.rules.group_window <= Duration::zero() {
            return 1;
        }
        let m = &head.new.message;
        1 + rows[1..]
            .iter()
            .take_while(|d| {
                groupable(d)
                    && d.attempts == 0
                    && d.next_attempt_at <= now
                    && d.new.message.kind == m.kind
                    && d.new.message.severity == m.severity
                    && d.new.created_at - head.new.created_at <= self.rules.group_window
            })
            .count()
    }

    /// One attempt of `d`, carrying `also` (similar alerts grouped into its message).
    async fn attempt(&self, n: &dyn ChannelNotifier, d: &Delivery, also: &[Delivery]) -> Result<Attempt, StoreError> {
        let attempts = d.attempts.saturating_add(1);
        let grouped;
        let message = if also.is_empty() {
            &d.new.message
        } else {
            grouped = grouped_message(&d.new.message, also);
            &grouped
        };
        match n.deliver(d.new.route, message).await {
            Ok(()) => {
                let now = self.clock.now();
                self.outbox.mark_sent(d.id, attempts, now).await?;
                for o in also {
                    self.outbox.mark_sent(o.id, 1, now).await?;
                }
                Ok(Attempt::Sent)
            }
            Err(e) => {
                let now = self.clock.now();
                let error = format!("{:?}: {}", e.kind, e.message);
                let give_up = e.kind == NotifyErrorKind::Rejected || attempts >= self.policy.max_attempts;
                if give_up {
                    tracing::warn!(channel = %n.channel(), delivery = d.id, attempts, "delivery given up: {error}");
                    self.outbox.mark_failed(d.id, attempts, &error).await?;
                    self.hand_to_fallback(n.channel(), d, now).await?;
                    // The channel goes on with the next row: a refused message must not block the rest.
                    return Ok(Attempt::GivenUp);
                }
                let mut wait = self.policy.backoff(attempts);
                if let Some(after) = e.retry_after.and_then(|a| Duration::from_std(a).ok()) {
                    wait = wait.max(after);
                }
                tracing::info!(channel = %n.channel(), delivery = d.id, attempts, "delivery retried later: {error}");
                self.outbox.mark_retry(d.id, attempts, &error, now + wait).await?;
                Ok(Attempt::Later(now + wait))
            }
        }
    }

    async fn hand_to_fallback(&self, from: Channel, d: &Delivery, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(fallback) = self.policy.fallback.filter(|f| *f != from) else { return Ok(()) };
        let mut message = d.new.message.clone();
        message.body.push_str(&format!("\n(not delivered by {from})"));
        let row = NewDelivery {
            channel: fallback,
            status: DeliveryStatus::Pending,
            message,
            created_at: now,
            note: Some(format!("fallback for delivery {} on {from}", d.id)),
            ..d.new.clone()
        };
        self.outbox.enqueue(vec![row]).await?;
        Ok(())
    }

    /// Sends until nothing is due or `timeout` (on the worker's clock) has passed, sleeping for retries that fall
    /// inside it: what `run-once` does before it exits. What was not sent stays pending for the next process.
    pub async fn flush(&self, timeout: std::time::Duration) -> Result<usize, StoreError> {
        let deadline = self.clock.now() + Duration::from_std(timeout).unwrap_or(Duration::MAX);
        let mut sent = 0;
        loop {
            let p = self.pass().await?;
            sent += p.sent;
            let Some(next) = p.next_due else { return Ok(sent) };
            if next > deadline {
                return Ok(sent);
            }
            let wait = (next - self.clock.now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait.max(std::time::Duration::from_millis(5))).await;
        }
    }

    /// Sends on every wake-up, when a retry falls due, or every `poll`, until `stop` turns true; then one last
    /// pass.
    pub async fn run(
        self,
        wake: Arc<tokio::sync::Notify>,
        mut stop: tokio::sync::watch::Receiver<bool>,
        poll: std::time::Duration,
    ) {
        loop {
            let next = match self.pass().await {
                Ok(p) => p.next_due,
                Err(e) => {
                    tracing::warn!("outbox unreadable, retried: {e}");
                    None
                }
            };
            if *stop.borrow() {
                return;
            }
            let wait = next.and_then(|t| (t - self.clock.now()).to_std().ok()).map_or(poll, |w| w.min(poll));
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use mcbot_stages::ManualClock;
    use mcbot_stages::ports::{EventKind, Message, NotifyError, Route, Severity};

    use super::*;
    use crate::notify::memory::MemoryOutbox;

    /// Records what it sends and when; fails as told (a refusal once, other failures until cleared).
    struct Fake {
        clock: Arc<ManualClock>,
        sent: Mutex<Vec<(String, DateTime<Utc>)>>,
        calls: Mutex<Vec<DateTime<Utc>>>,
        fail: Mutex<Option<NotifyError>>,
    }

    #[async_trait]
    impl ChannelNotifier for Fake {
        fn channel(&self) -> Channel {
            Channel::Telegram
        }
        async fn deliver(&self, _route: Route, m: &Message) -> Result<(), NotifyError> {
            let now = self.clock.now();
            self.calls.lock().unwrap().push(now);
            let mut fail = self.fail.lock().unwrap();
            if let Some(e) = fail.as_ref() {
                let err = NotifyError { kind: e.kind, message: e.message.clone(), retry_after: e.retry_after };
                if e.kind == NotifyErrorKind::Rejected {
                    *fail = None;
                }
                return Err(err);
            }
            drop(fail);
            self.sent.lock().unwrap().push((m.title.clone(), now));
            Ok(())
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn row(event_id: i64, at: DateTime<Utc>) -> NewDelivery {
        NewDelivery {
            event_id,
            occurrence: 0,
            channel: Channel::Telegram,
            route: Route::Alerts,
            status: DeliveryStatus::Pending,
            fatigue_key: None,
            resolves: false,
            note: None,
            message: Message {
                kind: EventKind::StaleData,
                severity: Severity::Warning,
                title: format!("m{event_id}"),
                body: String::new(),
                fields: vec![],
                ts: at,
                image_png: None,
                charts: Vec::new(),
            },
            created_at: at,
            follow_up: None,
        }
    }

    fn setup() -> (Arc<ManualClock>, Arc<MemoryOutbox>, Arc<Fake>, DeliveryWorker) {
        let clock = Arc::new(ManualClock::new(t0()));
        let outbox = Arc::new(MemoryOutbox::new());
        let fake = Arc::new(Fake {
            clock: clock.clone(),
            sent: Mutex::default(),
            calls: Mutex::default(),
            fail: Mutex::default(),
        });
        // Grouping off: these tests follow single messages; grouping has its own.
        let rules = FollowUpRules { group_window: Duration::zero(), ..FollowUpRules::default() };
        let worker = DeliveryWorker::new(outbox.clone(), clock.clone(), vec![fake.clone()], RetryPolicy::default())
            .with_rules(rules);
        (clock, outbox, fake, worker)
    }

    #[tokio::test]
    async fn alerts_of_one_kind_waiting_together_go_out_as_one_message_in_order() {
        let (clock, outbox, fake, worker) = setup();
        let worker = worker.with_rules(FollowUpRules::default());
        let t = clock.now();
        let mut other = row(4, t);
        other.message.kind = EventKind::JobFailed;
        let late = row(5, t + Duration::seconds(61));
        outbox.enqueue(vec![row(1, t), row(2, t), row(3, t + Duration::seconds(30)), other, late]).await.unwrap();
        clock.advance(Duration::seconds(61));
        worker.pass().await.unwrap();
        let titles: Vec<String> = fake.sent.lock().unwrap().iter().map(|(t, _)| t.clone()).collect();
        assert_eq!(titles, ["m1 (+2 similar)", "m4", "m5"], "a window of 60 s, one kind, never across another");
        assert!(outbox.all().iter().all(|d| d.status() == DeliveryStatus::Sent));
    }

    #[tokio::test]
    async fn an_emergency_repeats_until_acknowledged_and_a_warning_escalates_once_unless_cleared() {
        let (clock, outbox, fake, worker) = setup();
        let t = clock.now();
        let mut alarm = row(1, t);
        alarm.message.severity = Severity::Emergency;
        alarm.fatigue_key = Some("unknown:A".into());
        alarm.follow_up = Some(FollowUp::Repeat);
        let mut warn = row(2, t);
        warn.fatigue_key = Some("stale:B".into());
        warn.follow_up = Some(FollowUp::Escalate);
        let mut gone = row(3, t);
        gone.fatigue_key = Some("stale:C".into());
        gone.follow_up = Some(FollowUp::Escalate);
        let mut cleared = row(4, t + Duration::minutes(10));
        cleared.fatigue_key = Some("stale:C".into());
        cleared.resolves = true;
        outbox.enqueue(vec![alarm, warn, gone, cleared]).await.unwrap();
        let sent = |fake: &Fake| fake.sent.lock().unwrap().iter().map(|(t, _)| t.clone()).collect::<Vec<_>>();
        for _ in 0..7 {
            worker.pass().await.unwrap();
            clock.advance(Duration::minutes(5));
        }
        // 0, 5, 10 ... 30 min: the emergency at 0 and six repeats; the warning escalated at 30 min.
        let titles = sent(&fake);
        assert_eq!(titles.iter().filter(|t| t.starts_with("m1")).count(), 7, "{titles:?}");
        assert!(titles.contains(&"m1 (repeat 6, not acknowledged)".to_owned()), "{titles:?}");
        assert_eq!(titles.iter().filter(|t| t.starts_with("escalated: m2")).count(), 1, "{titles:?}");
        assert!(!titles.iter().any(|t| t.contains("escalated: m3")), "cleared before: {titles:?}");
        assert_eq!(outbox.acknowledge(clock.now()).await.unwrap(), 1);
        for _ in 0..6 {
            worker.pass().await.unwrap();
            clock.advance(Duration::minutes(5));
        }
        assert_eq!(sent(&fake).len(), titles.len(), "acknowledged, escalated once: silence");
    }

    #[tokio::test]
    async fn a_five_minute_outage_delays_but_loses_nothing_and_keeps_order() {
        let (clock, outbox, fake, worker) = setup();
        *fake.fail.lock().unwrap() = Some(NotifyError::transient("connection refused"));
        for i in 1..=20 {
            outbox.enqueue(vec![row(i, clock.now())]).await.unwrap();
            worker.pass().await.unwrap();
            clock.advance(Duration::seconds(15));
        }
        assert!(fake.sent.lock().unwrap().is_empty());
        // Only the head was tried while the channel was down: the rest wait behind it, in order.
        assert!(outbox.all().iter().skip(1).all(|d| d.attempts == 0));
        *fake.fail.lock().unwrap() = None;
        for _ in 0..60 {
            clock.advance(Duration::seconds(10));
            worker.pass().await.unwrap();
        }
        let titles: Vec<String> = fake.sent.lock().unwrap().iter().map(|(t, _)| t.clone()).collect();
        let want: Vec<String> = (1..=20).map(|i| format!("m{i}")).collect();
        assert_eq!(titles, want, "every message, in order, none twice");
        assert!(outbox.all().iter().all(|d| d.status() == DeliveryStatus::Sent));
    }

    #[tokio::test]
    async fn retry_after_is_honoured_to_the_second() {
        let (clock, outbox, fake, worker) = setup();
        outbox.enqueue(vec![row(1, clock.now())]).await.unwrap();
        *fake.fail.lock().unwrap() = Some(NotifyError::rate_limited("429", std::time::Duration::from_secs(3)));
        worker.pass().await.unwrap();
        *fake.fail.lock().unwrap() = None;
        for _ in 0..29 {
            clock.advance(Duration::milliseconds(100));
            worker.pass().await.unwrap();
        }
        assert_eq!(fake.calls.lock().unwrap().len(), 1, "no request before the 3 s are over");
        clock.advance(Duration::milliseconds(100));
        worker.pass().await.unwrap();
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2);
        assert!(calls[1] - calls[0] >= Duration::seconds(3));
    }

    #[tokio::test]
    async fn a_refused_message_fails_at_once_goes_to_the_fallback_and_does_not_block_the_rest() {
        let (clock, outbox, fake, worker) = setup();
        outbox.enqueue(vec![row(1, clock.now()), row(2, clock.now())]).await.unwrap();
        *fake.fail.lock().unwrap() = Some(NotifyError::rejected("chat not found"));
        worker.pass().await.unwrap();
        let rows = outbox.all();
        assert_eq!(rows[0].status(), DeliveryStatus::Failed);
        assert_eq!(rows[0].attempts, 1);
        assert_eq!(rows[1].status(), DeliveryStatus::Sent);
        let fallback: Vec<_> = rows.iter().filter(|d| d.new.channel == Channel::Log).collect();
        assert_eq!(fallback.len(), 1);
        assert!(fallback[0].new.message.body.contains("not delivered by telegram"));
        assert_eq!(outbox.requeue_failed(Some(Channel::Telegram), clock.now()).await.unwrap(), 1);
        worker.pass().await.unwrap();
        assert_eq!(fake.sent.lock().unwrap().len(), 2, "re-queued and sent");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::seconds(1));
        assert_eq!(p.backoff(4), Duration::seconds(8));
        assert_eq!(p.backoff(40), Duration::minutes(5));
    }
}
