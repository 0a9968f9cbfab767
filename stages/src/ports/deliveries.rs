//! The notification outbox: one delivery row per (event, channel), written by the notification consumer and
//! worked off by a delivery worker outside the trading path. A row that was not sent stays pending across a
//! crash or a channel outage, so no message is lost; the worker's retries, back-off and fatigue rules are
//! written against this port and tested on an in-memory outbox.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{EventKind, NewEvent, Severity, StoreError};

/// A channel to people. Stored by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Telegram chats.
    Telegram,
    /// Discord webhooks.
    Discord,
    /// Email over SMTP.
    Email,
    /// The process log: always on, so a bot without any chat configured still tells someone.
    Log,
}

impl Channel {
    /// Every channel, in the order status lists them.
    pub const ALL: [Channel; 4] = [Channel::Telegram, Channel::Discord, Channel::Email, Channel::Log];

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Telegram => "telegram",
            Channel::Discord => "discord",
            Channel::Email => "email",
            Channel::Log => "log",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which stream a message belongs to; channels pick a destination per route (a Discord webhook per route).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// Fills and closed trades.
    Trades,
    /// Warnings and worse, and lifecycle.
    Alerts,
    /// Period reports.
    Reports,
}

impl Route {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Trades => "trades",
            Route::Alerts => "alerts",
            Route::Reports => "reports",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Route::Trades, Route::Alerts, Route::Reports].into_iter().find(|r| r.as_str() == s)
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its first or next attempt.
    Pending,
    /// Delivered.
    Sent,
    /// Given up on after its attempts (or refused by the channel); `mcbot notify retry` re-queues it.
    Failed,
    /// Not sent on purpose (a repeat inside its cooldown, or held back during safe mode); counted in the next.
    Suppressed,
}

impl DeliveryStatus {
    /// Every status.
    pub const ALL: [DeliveryStatus; 4] =
        [DeliveryStatus::Pending, DeliveryStatus::Sent, DeliveryStatus::Failed, DeliveryStatus::Suppressed];

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Suppressed => "suppressed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// What happens to a delivery after it was recorded, until it is closed (acknowledged, escalated, or its
/// condition cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FollowUp {
    /// An emergency: sent again every few minutes until someone acknowledges it.
    Repeat,
    /// A warning about a condition that can clear: sent again as critical if still active after a while.
    Escalate,
}

impl FollowUp {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            FollowUp::Repeat => "repeat",
            FollowUp::Escalate => "escalate",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [FollowUp::Repeat, FollowUp::Escalate].into_iter().find(|f| f.as_str() == s)
    }
}

/// A rendered notification, channel-neutral: each channel formats it its own way (HTML for Telegram, an embed
/// for Discord, a mail). Stored with its delivery, so it is sent as it was rendered even after the event that
/// produced it was pruned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The event kind it reports (routing, colour, filters).
    pub kind: EventKind,
    /// How loud.
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// Details (plain text; channels escape it).
    pub body: String,
    /// Labelled figures (`qty`, `price`, `fee`, ...), exact decimals as text.
    pub fields: Vec<(String, String)>,
    /// When the fact happened.
    pub ts: DateTime<Utc>,
    /// A PNG chart, for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_png: Option<Vec<u8>>,
    /// More charts (a report's set), each sent as its own photo or attachment after the text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charts: Vec<ChartImage>,
}

/// A named PNG chart attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartImage {
    /// File name, e.g. `equity.png` (also the content id of an inline email image, without `.png`).
    pub name: String,
    /// One line saying what it shows.
    pub caption: String,
    /// PNG bytes.
    pub png: Vec<u8>,
}

/// A delivery about to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The event it reports (0 for messages that report no event, such as a test message).
    pub event_id: i64,
    /// Repeat number of the same event on the same channel (an emergency repeated until acknowledged): 0 first.
    pub occurrence: i32,
    /// The channel that delivers it.
    pub channel: Channel,
    /// Which stream (destination within the channel).
    pub route: Route,
    /// Pending, or suppressed from the start.
    pub status: DeliveryStatus,
    /// Repeats of the same condition share it: the cooldown, the count and "resolved" are per key.
    pub fatigue_key: Option<String>,
    /// True when this message reports that the condition of `fatigue_key` cleared.
    pub resolves: bool,
    /// Why it was suppressed, when it was.
    pub note: Option<String>,
    /// What to send.
    pub message: Message,
    /// When it was recorded (also its first attempt time).
    pub created_at: DateTime<Utc>,
    /// Repeat or escalate later, until closed; `None` for a message that is sent once.
    pub follow_up: Option<FollowUp>,
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Row id: deliveries of one channel are sent in id order.
    pub id: i64,
    /// What was recorded.
    pub new: NewDelivery,
    /// Attempts made so far.
    pub attempts: i32,
    /// The last failure, already free of secrets.
    pub last_error: Option<String>,
    /// No attempt before this time.
    pub next_attempt_at: DateTime<Utc>,
    /// When it was delivered.
    pub sent_at: Option<DateTime<Utc>>,
    /// When its follow-up ended (acknowledged, escalated, or its condition cleared).
    pub closed_at: Option<DateTime<Utc>>,
}

impl Delivery {
    /// Its status.
    pub fn status(&self) -> DeliveryStatus {
        self.new.status
    }
}

/// Deliveries per channel and status, for `mcbot notify status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryCount {
    /// Channel.
    pub channel: Channel,
    /// Status.
    pub status: DeliveryStatus,
    /// How many.
    pub count: i64,
}

/// The outbox's storage. Implemented by the SQL store (both backends) and by an in-memory outbox for tests.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Records deliveries; a row whose (event, occurrence, channel) exists is left as it is (a consumer that
    /// handles an event twice after a crash records it once). Returns how many were new.
    async fn enqueue(&self, rows: Vec<NewDelivery>) -> Result<usize, StoreError>;

    /// The oldest pending deliveries of `channel`, in id order (due or not: the worker keeps a channel's order
    /// and waits for its head).
    async fn pending(&self, channel: Channel, limit: i64) -> Result<Vec<Delivery>, StoreError>;

    /// Marks a delivery sent.
    async fn mark_sent(&self, id: i64, attempts: i32, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Records a failed attempt and when to try next.
    async fn mark_retry(&self, id: i64, attempts: i32, error: &str, next: DateTime<Utc>) -> Result<(), StoreError>;

    /// Gives a delivery up: failed, with its last error.
    async fn mark_failed(&self, id: i64, attempts: i32, error: &str) -> Result<(), StoreError>;

    /// Re-queues failed deliveries (of one channel, or all) for an attempt at `now`; returns how many.
    async fn requeue_failed(&self, channel: Option<Channel>, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Counts per channel and status.
    async fn delivery_counts(&self) -> Result<Vec<DeliveryCount>, StoreError>;

    /// The newest delivery of `channel` with this fatigue key that was not suppressed.
    async fn last_unsuppressed(&self, channel: Channel, key: &str) -> Result<Option<Delivery>, StoreError>;

    /// How many deliveries of `channel` with this key were suppressed after row `after_id`, and the time of the
    /// first of them.
    async fn suppressed_after(
        &self,
        channel: Channel,
        key: &str,
        after_id: i64,
    ) -> Result<(i64, Option<DateTime<Utc>>), StoreError>;

    /// When the condition of `key` on `channel` became active: the first delivery with the key after the last one
    /// that resolved it. `None` when it is not active.
    async fn active_since(&self, channel: Channel, key: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// True when a delivery of `channel` after row `after_id` reports that the condition of `key` cleared.
    async fn resolved_after(&self, channel: Channel, key: &str, after_id: i64) -> Result<bool, StoreError>;

    /// First deliveries (occurrence 0) with a follow-up that is not closed, oldest first, at most `limit`.
    async fn open_follow_ups(&self, limit: i64) -> Result<Vec<Delivery>, StoreError>;

    /// Ends the follow-up of delivery `id`.
    async fn close_follow_up(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Acknowledges every repeating emergency: their repeats stop. Returns how many deliveries were closed.
    async fn acknowledge(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Deletes sent and suppressed deliveries recorded before `before` (pending and failed ones stay, and so do
    /// open follow-ups); returns how many.
    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Mutes: event kind (or `all`) and until when; expired ones are not returned.
    async fn mutes(&self, now: DateTime<Utc>) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;

    /// Mutes `kind` (an event kind's name, or `all`) until `until`; a time in the past unmutes it. `event`
    /// reports it and is appended in the same transaction, so a consumer that keeps the mutes it read knows
    /// from the log alone when to read them again.
    async fn set_mute(&self, kind: &str, until: DateTime<Utc>, event: NewEvent) -> Result<(), StoreError>;
}
