//! Consumers of the event log: each reads the log from its persisted cursor, hands batches to its handler and
//! moves the cursor only after the handler succeeded, so every event is handled at least once (handlers are
//! idempotent by event id) and a restart resumes where the consumer stopped. The cursor is leased, so of several
//! replicas one consumes at a time. An in-process wake-up after each commit means delivery does not wait for a
//! poll; the poll stays as the fallback for events written by other processes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcbot_stages::Clock;
use mcbot_stages::ports::{Event, EventQuery, Store, StoreError};

/// What a consumer does with the events.
#[async_trait]
pub trait EventHandler: Send + Sync {
    /// The consumer's name: its cursor's key.
    fn name(&self) -> &str;
    /// Handles a batch, oldest first. An error leaves the cursor before the batch: it is handed over again.
    async fn handle(&self, events: &[Event]) -> Result<(), String>;
}

/// Runs one handler over the log.
pub struct Consumer {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    handler: Arc<dyn EventHandler>,
    holder: String,
    batch: i64,
    lease: chrono::Duration,
    held: Mutex<Option<Held>>,
}

/// The lease this consumer took and its cursor since. Only the lease's holder moves the cursor and no one else
/// can take the lease before it runs out, so until half of it has passed a pass reads on from here instead of
/// renewing it: one write less per pass, and still half a lease of margin.
#[derive(Debug, Clone, Copy)]
struct Held {
    cursor: i64,
    renew_at: DateTime<Utc>,
}

/// How one pass went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// This many events were handled; the cursor is at the end of the log as of the last read.
    Handled(usize),
    /// Another holder leases the cursor.
    Leased,
}

impl Consumer {
    /// A consumer for `handler`, holding its cursor's lease as `holder` (unique per process).
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, handler: Arc<dyn EventHandler>, holder: String) -> Self {
        // Every consumer's series exist from the start, so a dashboard or alert sees zero rather than nothing.
        let name = handler.name().to_owned();
        metrics::counter!("mcbot_event_consumer_failures_total", "consumer" => name.clone()).absolute(0);
        metrics::counter!("mcbot_event_consumer_handled_total", "consumer" => name).absolute(0);
        Self { store, clock, handler, holder, batch: 256, lease: chrono::Duration::seconds(60), held: Mutex::new(None) }
    }

    /// Handles every event after the cursor, batch by batch, and counts what it handled and its failed
    /// batches, labelled by consumer name. A batch shorter than the limit reached the end of the log as of its
    /// read, so the pass stops there rather than claim and read once more: events committed meanwhile come with
    /// their own wake-up. How far each consumer is behind the log is read from the stored cursors when
    /// `/metrics` is scraped, exact whichever process runs the consumer.
    pub async fn pump(&self) -> Result<Pumped, StoreError> {
        let name = self.handler.name();
        let mut handled = 0;
        loop {
            let now = self.clock.now();
            let Some(cursor) = self.cursor(now).await? else {
                return Ok(Pumped::Leased);
            };
            let query = EventQuery { after: cursor, limit: self.batch, ..Default::default() };
            let events = self.store.read_events(&query).await?;
            let Some(last) = events.last().map(|e| e.id) else {
                return Ok(Pumped::Handled(handled));
            };
            if let Err(e) = self.handler.handle(&events).await {
                tracing::warn!(consumer = %name, "events not handled, retried later: {e}");
                metrics::counter!("mcbot_event_consumer_failures_total", "consumer" => name.to_owned()).increment(1);
                return Ok(Pumped::Handled(handled));
            }
            if !self.store.advance_consumer(name, &self.holder, last, self.clock.now()).await? {
                self.set_held(None);
                return Ok(Pumped::Leased);
            }
            if let Some(h) = self.lock().as_mut() {
                h.cursor = last;
            }
            metrics::counter!("mcbot_event_consumer_handled_total", "consumer" => name.to_owned())
                .increment(events.len() as u64);
            handled += events.len();
            // A batch short of the limit reached the end of the log as it was committed (ids are gap-free, so
            // nothing below the last one can still appear): asking again would cost a claim and a read for
            // nothing. Whatever is appended from now on wakes the next pass.
            if i64::try_from(events.len()).unwrap_or(i64::MAX) < self.batch {
                return Ok(Pumped::Handled(handled));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_held(&self, held: Option<Held>) {
        *self.lock() = held;
    }

    /// The cursor to read after: the one this consumer holds while its lease is young, otherwise the one its
    /// renewed (or newly taken) lease returns; `None` while another holder's lease runs.
    async fn cursor(&self, now: DateTime<Utc>) -> Result<Option<i64>, StoreError> {
        let held = *self.lock();
        if let Some(h) = held.filter(|h| now < h.renew_at) {
            return Ok(Some(h.cursor));
        }
        let claimed = self.store.claim_consumer(self.handler.name(), &self.holder, now, self.lease).await;
        let cursor = match claimed {
            Ok(c) => c,
            Err(e) => {
                self.set_held(None);
                return Err(e);
            }
        };
        self.set_held(cursor.map(|cursor| Held { cursor, renew_at: now + self.lease / 2 }));
        Ok(cursor)
    }

    /// Pumps on every wake-up (or every `poll`) until `stop` turns true, then once more.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>, poll: Duration) {
        let mut wake = self.store.subscribe_events();
        loop {
            if let Err(e) = self.pump().await {
                tracing::warn!(consumer = %self.handler.name(), "event log unreadable: {e}");
            }
            if *stop.borrow() {
                return;
            }
            let woken = async {
                match wake.as_mut() {
                    Some(rx) => {
                        let _ = rx.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(poll) => {}
                () = crate::runtime::stop_requested(&mut stop) => {}
            }
        }
    }
}
