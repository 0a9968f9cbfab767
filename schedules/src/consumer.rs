//! Consumers of the event log: each reads the log from its persisted cursor, hands batches to its handler and
//! moves the cursor only after the handler succeeded, so every event is handled at least once (handlers are
//! idempotent by event id) and a restart resumes where the consumer stopped. The cursor is leased, so of several
//! replicas one consumes at a time. Each commit in this process hands its events over once committed: a wake-up,
//! so delivery does not wait for a poll, and the events themselves, so a consumer at the log's end handles them
//! without reading them back. Only events that continue the log exactly from the cursor are taken that way;
//! anything else (a gap, events of other processes, a consumer that fell behind) is read from the store, and the
//! poll stays as the fallback for events written by other processes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcbot_stages::Clock;
use mcbot_stages::ports::{Committed, Event, EventQuery, Store, StoreError};
use tokio::sync::broadcast;

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
    /// This process's commits, as they happen.
    handed: Mutex<Option<broadcast::Receiver<Committed>>>,
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
        let handed = Mutex::new(store.subscribe_events());
        Self {
            store,
            clock,
            handler,
            holder,
            batch: 256,
            lease: chrono::Duration::seconds(60),
            held: Mutex::new(None),
            handed,
        }
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
            let (events, complete) = match self.take_handed(cursor) {
                Some(events) => (events, true),
                None => {
                    let query = EventQuery { after: cursor, limit: self.batch, ..Default::default() };
                    let events = self.store.read_events(&query).await?;
                    let short = i64::try_from(events.len()).unwrap_or(i64::MAX) < self.batch;
                    (events, short)
                }
            };
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
            // nothing below the last one can still appear), and so did the events handed over: asking again would
            // cost a claim and a read for nothing. Whatever is appended from now on wakes the next pass.
            if complete {
                return Ok(Pumped::Handled(handled));
            }
        }
    }

    /// The events this process committed since the last pass, when they continue the log exactly from `cursor`
    /// (ids are gap-free, so then nothing the store holds after the cursor is missing from them); `None` when
    /// nothing was handed over, when the hand-over lost some (a consumer that fell behind the channel), or when
    /// another process's events lie between: then the store is read.
    fn take_handed(&self, cursor: i64) -> Option<Vec<Event>> {
        let mut guard = self.handed.lock().unwrap_or_else(|p| p.into_inner());
        let rx = guard.as_mut()?;
        let mut events: Vec<Event> = Vec::new();
        let mut whole = true;
        loop {
            match rx.try_recv() {
                Ok(batch) => events.extend(batch.iter().filter(|e| e.id > cursor).cloned()),
                Err(broadcast::error::TryRecvError::Lagged(_)) => whole = false,
                Err(_) => break,
            }
        }
        // Commits of concurrent units of work may be handed over in either order.
        events.sort_unstable_by_key(|e| e.id);
        let continues = events.iter().zip(cursor + 1..).all(|(e, id)| e.id == id);
        (whole && continues && !events.is_empty()).then_some(events)
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
