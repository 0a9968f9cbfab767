//! An outbox held in memory, with the same contract as the SQL one: the routing, fatigue and retry rules are
//! unit-tested on it without a database, and the contract tests hold both to the same behaviour.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcbot_stages::ports::{
    Channel, Delivery, DeliveryCount, DeliveryStatus, DeliveryStore, FollowUp, NewDelivery, NewEvent, StoreError,
};

/// Deliveries in a vector, ids from 1.
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    rows: Mutex<Vec<Delivery>>,
    mutes: Mutex<std::collections::BTreeMap<String, DateTime<Utc>>>,
}

impl MemoryOutbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every row, for assertions.
    pub fn all(&self) -> Vec<Delivery> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Delivery>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, id: i64, f: impl FnOnce(&mut Delivery)) {
        if let Some(d) = self.lock().iter_mut().find(|d| d.id == id) {
            f(d);
        }
    }
}

#[async_trait]
impl DeliveryStore for MemoryOutbox {
    async fn enqueue(&self, rows: Vec<NewDelivery>) -> Result<usize, StoreError> {
        let mut all = self.lock();
        let mut added = 0;
        for new in rows {
            let dup = all.iter().any(|d| {
                d.new.event_id == new.event_id
                    && d.new.occurrence == new.occurrence
                    && d.new.channel == new.channel
                    && new.event_id != 0
            });
            if dup {
                continue;
            }
            let id = all.last().map_or(1, |d| d.id + 1);
            let next_attempt_at = new.created_at;
            all.push(Delivery {
                id,
                new,
                attempts: 0,
                last_error: None,
                next_attempt_at,
                sent_at: None,
                closed_at: None,
            });
            added += 1;
        }
        Ok(added)
    }

    async fn pending(&self, channel: Channel, limit: i64) -> Result<Vec<Delivery>, StoreError> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(self
            .lock()
            .iter()
            .filter(|d| d.new.channel == channel && d.new.status == DeliveryStatus::Pending)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn mark_sent(&self, id: i64, attempts: i32, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.update(id, |d| {
            d.new.status = DeliveryStatus::Sent;
            d.attempts = attempts;
            d.sent_at = Some(now);
        });
        Ok(())
    }

    async fn mark_retry(&self, id: i64, attempts: i32, error: &str, next: DateTime<Utc>) -> Result<(), StoreError> {
        self.update(id, |d| {
            d.attempts = attempts;
            d.last_error = Some(error.to_owned());
            d.next_attempt_at = next;
        });
        Ok(())
    }

    async fn mark_failed(&self, id: i64, attempts: i32, error: &str) -> Result<(), StoreError> {
        self.update(id, |d| {
            d.new.status = DeliveryStatus::Failed;
            d.attempts = attempts;
            d.last_error = Some(error.to_owned());
        });
        Ok(())
    }

    async fn requeue_failed(&self, channel: Option<Channel>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut n = 0;
        for d in self.lock().iter_mut() {
            if d.new.status == DeliveryStatus::Failed && channel.is_none_or(|c| c == d.new.channel) {
                d.new.status = DeliveryStatus::Pending;
                d.attempts = 0;
                d.next_attempt_at = now;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn delivery_counts(&self) -> Result<Vec<DeliveryCount>, StoreError> {
        let mut out: Vec<DeliveryCount> = Vec::new();
        for d in self.lock().iter() {
            match out.iter_mut().find(|c| c.channel == d.new.channel && c.status == d.new.status) {
                Some(c) => c.count += 1,
                None => out.push(DeliveryCount { channel: d.new.channel, status: d.new.status, count: 1 }),
            }
        }
        out.sort_by_key(|c| (c.channel, c.status));
        Ok(out)
    }

    async fn last_unsuppressed(&self, channel: Channel, key: &str) -> Result<Option<Delivery>, StoreError> {
        Ok(self
            .lock()
            .iter()
            .rev()
            .find(|d| {
                d.new.channel == channel
                    && d.new.fatigue_key.as_deref() == Some(key)
                    && d.new.status != DeliveryStatus::Suppressed
            })
            .cloned())
    }

    async fn suppressed_after(
        &self,
        channel: Channel,
        key: &str,
        after_id: i64,
    ) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
        let rows = self.lock();
        let hits: Vec<&Delivery> = rows
            .iter()
            .filter(|d| {
                d.id > after_id
                    && d.new.channel == channel
                    && d.new.fatigue_key.as_deref() == Some(key)
                    && d.new.status == DeliveryStatus::Suppressed
            })
            .collect();
        Ok((i64::try_from(hits.len()).unwrap_or(i64::MAX), hits.first().map(|d| d.new.created_at)))
    }

    async fn active_since(&self, channel: Channel, key: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let rows = self.lock();
        let same = |d: &&Delivery| d.new.channel == channel && d.new.fatigue_key.as_deref() == Some(key);
        let cleared = rows.iter().filter(same).filter(|d| d.new.resolves).map(|d| d.id).max().unwrap_or(0);
        Ok(rows.iter().filter(same).find(|d| d.id > cleared).map(|d| d.new.created_at))
    }

    async fn resolved_after(&self, channel: Channel, key: &str, after_id: i64) -> Result<bool, StoreError> {
        Ok(self.lock().iter().any(|d| {
            d.id > after_id && d.new.channel == channel && d.new.resolves && d.new.fatigue_key.as_deref() == Some(key)
        }))
    }

    async fn open_follow_ups(&self, limit: i64) -> Result<Vec<Delivery>, StoreError> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(self
            .lock()
            .iter()
            .filter(|d| d.new.follow_up.is_some() && d.closed_at.is_none() && d.new.occurrence == 0)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn close_follow_up(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.update(id, |d| {
            d.closed_at.get_or_insert(now);
        });
        Ok(())
    }

    async fn acknowledge(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut n = 0;
        for d in self.lock().iter_mut() {
            if d.new.follow_up == Some(FollowUp::Repeat) && d.closed_at.is_none() && d.new.occurrence == 0 {
                d.closed_at = Some(now);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut rows = self.lock();
        let n = rows.len();
        rows.retain(|d| {
            let done = matches!(d.new.status, DeliveryStatus::Sent | DeliveryStatus::Suppressed);
            let open = d.new.follow_up.is_some() && d.closed_at.is_none();
            !(d.new.created_at < before && done && !open)
        });
        Ok(u64::try_from(n - rows.len()).unwrap_or(0))
    }

    async fn mutes(&self, now: DateTime<Utc>) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let m = self.mutes.lock().unwrap_or_else(|p| p.into_inner());
        Ok(m.iter().filter(|(_, u)| **u > now).map(|(k, u)| (k.clone(), *u)).collect())
    }

    /// The event is not kept: this outbox has no event log.
    async fn set_mute(&self, kind: &str, until: DateTime<Utc>, _event: NewEvent) -> Result<(), StoreError> {
        self.mutes.lock().unwrap_or_else(|p| p.into_inner()).insert(kind.to_owned(), until);
        Ok(())
    }
}
