//! The notification outbox's statements: the `DeliveryStore` port on both backends. Times and the rendered
//! message are bound as what they mean (TIMESTAMPTZ and JSONB on PostgreSQL, epoch milliseconds and JSON text on
//! SQLite), as in the event log.

use super::SqlStore;
use super::codec::{Cols, clean};
use super::query::{Pool, Q, Row, Sql};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcbot_stages::ports::{
    Channel, Delivery, DeliveryCount, DeliveryStatus, DeliveryStore, FollowUp, Message, NewDelivery, NewEvent, Route,
    StoreError, UnitOfWork,
};

/// A whole batch of deliveries in one statement, whatever its size, on SQLite: the rows travel as one JSON array
/// (one array per row, columns in order, times as epoch milliseconds) bound to one parameter, so one prepared text
/// serves every batch and the batch is atomic without a transaction around it. Rows are numbered in the batch's
/// order (`ORDER BY r.key`), which the fatigue rules and the worker read by. `WHERE true` parts the SELECT from
/// the upsert clause, as SQLite's grammar asks.
static INSERT_SQLITE: Sql = Sql::sqlite(
    "INSERT INTO deliveries (event_id, occurrence, channel, route, status, fatigue_key, resolves, note, message, \
     created_at, next_attempt_at, follow_up) \
     SELECT r.value ->> 0, r.value ->> 1, r.value ->> 2, r.value ->> 3, r.value ->> 4, r.value ->> 5, \
     r.value ->> 6, r.value ->> 7, r.value -> 8, r.value ->> 9, r.value ->> 9, r.value ->> 10 \
     FROM json_each($1) AS r WHERE true ORDER BY r.key \
     ON CONFLICT (event_id, occurrence, channel) DO NOTHING",
);
/// The same on PostgreSQL: the columns travel as arrays of their own types (as the event append does), numbered
/// in the batch's order. Committed without waiting for its WAL flush (a disk sync, most of a consumer's pass):
/// the rows are derived from events that are durable, and WAL is replayed in order, so a server crash can only
/// lose them together with the cursor advance that follows them, and the consumer derives them again. A row is
/// never lost once sent: marking it sent commits synchronously, which flushes it too.
pub(crate) static INSERT_PG: Sql = Sql::postgres(
    "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true) AS setting) \
     INSERT INTO deliveries (event_id, occurrence, channel, route, status, fatigue_key, resolves, note, message, \
     created_at, next_attempt_at, follow_up) \
     SELECT t.event_id, t.occurrence, t.channel, t.route, t.status, t.fatigue_key, t.resolves, t.note, t.message, \
     t.created_at, t.created_at, t.follow_up \
     FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[], \
     $8::text[], $9::jsonb[], $10::timestamptz[], $11::text[]) WITH ORDINALITY \
     AS t(event_id, occurrence, channel, route, status, fatigue_key, resolves, note, message, created_at, \
     follow_up, n) CROSS JOIN relaxed \
     ORDER BY t.n \
     ON CONFLICT (event_id, occurrence, channel) DO NOTHING",
);
static PENDING: Sql = Sql::new(
    "SELECT id, event_id, occurrence, channel, route, status, fatigue_key, resolves, note, message, \
     attempts, last_error, created_at, next_attempt_at, sent_at, follow_up, closed_at FROM deliveries \
     WHERE channel = $1 AND status = 'pending' ORDER BY id LIMIT $2",
);
static SENT: Sql =
    Sql::new("UPDATE deliveries SET status = 'sent', attempts = $2, sent_at = $3, last_error = NULL WHERE id = $1");
static RETRY: Sql =
    Sql::new("UPDATE deliveries SET attempts = $2, last_error = $3, next_attempt_at = $4 WHERE id = $1");
static FAILED: Sql = Sql::new("UPDATE deliveries SET status = 'failed', attempts = $2, last_error = $3 WHERE id = $1");
static REQUEUE_ALL: Sql =
    Sql::new("UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1 WHERE status = 'failed'");
static REQUEUE_ONE: Sql = Sql::new(
    "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1 \
     WHERE status = 'failed' AND channel = $2",
);
static COUNTS: Sql =
    Sql::new("SELECT channel, status, COUNT(*) AS n FROM deliveries GROUP BY channel, status ORDER BY channel, status");
static LAST_UNSUPPRESSED: Sql = Sql::new(
    "SELECT id, event_id, occurrence, channel, route, status, fatigue_key, resolves, note, message, \
     attempts, last_error, created_at, next_attempt_at, sent_at, follow_up, closed_at FROM deliveries \
     WHERE channel = $1 AND fatigue_key = $2 AND status <> 'suppressed' ORDER BY id DESC LIMIT 1",
);
static SUPPRESSED_AFTER: Sql = Sql::new(
    "SELECT COUNT(*) AS n, MIN(created_at) AS first FROM deliveries \
     WHERE channel = $1 AND fatigue_key = $2 AND status = 'suppressed' AND id > $3",
);
static ACTIVE_SINCE: Sql = Sql::new(
    "SELECT MIN(created_at) AS since FROM deliveries WHERE channel = $1 AND fatigue_key = $2 AND id > \
     COALESCE((SELECT MAX(id) FROM deliveries WHERE channel = $1 AND fatigue_key = $2 AND resolves = $3), 0)",
);

static OPEN_FOLLOW_UPS: Sql = Sql::new(
    "SELECT id, event_id, occurrence, channel, route, status, fatigue_key, resolves, note, message, \
     attempts, last_error, created_at, next_attempt_at, sent_at, follow_up, closed_at FROM deliveries \
     WHERE follow_up IS NOT NULL AND closed_at IS NULL AND occurrence = 0 ORDER BY id LIMIT $1",
);
static RESOLVED_AFTER: Sql = Sql::new(
    "SELECT id FROM deliveries WHERE channel = $1 AND fatigue_key = $2 AND id > $3 AND resolves = TRUE LIMIT 1",
);
static CLOSE_FOLLOW_UP: Sql = Sql::new("UPDATE deliveries SET closed_at = $2 WHERE id = $1 AND closed_at IS NULL");
static ACKNOWLEDGE: Sql = Sql::new(
    "UPDATE deliveries SET closed_at = $1 WHERE follow_up = 'repeat' AND closed_at IS NULL AND occurrence = 0",
);
static PRUNE: Sql = Sql::new(
    "DELETE FROM deliveries WHERE created_at < $1 AND status IN ('sent', 'suppressed') \
     AND (follow_up IS NULL OR closed_at IS NOT NULL)",
);
static LOAD_VALUE: Sql = Sql::new("SELECT value FROM bot_state WHERE key = $1");
static SAVE_VALUE: Sql = Sql::new(
    "INSERT INTO bot_state (key, value, version) VALUES ($1, $2, 1) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = bot_state.version + 1",
);

/// The `bot_state` key of the notification mutes (kind → until).
const MUTES_KEY: &str = "notify_mutes";

static CURSOR_HOLDER: Sql = Sql::new("SELECT holder FROM event_cursors WHERE consumer = $1");
static FREE_CURSOR: Sql = Sql::new("UPDATE event_cursors SET lease_until = $3 WHERE consumer = $1 AND holder = $2");

/// The fixed statements, for the catalogue.
pub(crate) static STATEMENTS: &[&Sql] = &[
    &INSERT_SQLITE,
    &INSERT_PG,
    &PENDING,
    &SENT,
    &RETRY,
    &FAILED,
    &REQUEUE_ALL,
    &REQUEUE_ONE,
    &COUNTS,
    &LAST_UNSUPPRESSED,
    &SUPPRESSED_AFTER,
    &ACTIVE_SINCE,
    &CURSOR_HOLDER,
    &FREE_CURSOR,
    &OPEN_FOLLOW_UPS,
    &RESOLVED_AFTER,
    &CLOSE_FOLLOW_UP,
    &ACKNOWLEDGE,
    &PRUNE,
    &LOAD_VALUE,
    &SAVE_VALUE,
];

impl SqlStore {
    /// A small JSON value kept under `key` in the state table (chat offsets, mutes), if any.
    pub async fn load_value(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let row = Q::fixed(&LOAD_VALUE).bind(key).fetch_optional(&self.pool).await.map_err(self.err("load_value"))?;
        value_of(row.as_ref())
    }

    /// Keeps `value` under `key` in the state table (never the trading state's key).
    pub async fn save_value(&self, key: &str, value: serde_json::Value) -> Result<(), StoreError> {
        if key == super::records::BOT_STATE_KEY {
            return Err(StoreError::Corrupt("the trading state is saved only through its unit of work".into()));
        }
        Q::fixed(&SAVE_VALUE).bind(key).bind(value).execute(&self.pool).await.map_err(self.err("save_value"))?;
        Ok(())
    }

    /// Who holds the cursor lease of `consumer` (`host:pid`), if anyone ever did.
    pub async fn consumer_holder(&self, consumer: &str) -> Result<Option<String>, StoreError> {
        let row = Q::fixed(&CURSOR_HOLDER)
            .bind(consumer)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("consumer_holder"))?;
        Ok(row.as_ref().map(|r| Cols::new(r, "event_cursors").opt_text("holder")).transpose()?.flatten())
    }

    /// Ends the lease of `holder` on `consumer`'s cursor at once (its process is known to be dead), so the next
    /// claim need not wait for it to expire. Nothing happens if another holder has it by now.
    pub async fn free_consumer(&self, consumer: &str, holder: &str) -> Result<bool, StoreError> {
        let done = Q::fixed(&FREE_CURSOR)
            .bind(consumer)
            .bind(holder)
            .bind(DateTime::<Utc>::UNIX_EPOCH)
            .execute(&self.pool)
            .await
            .map_err(self.err("free_consumer"))?;
        Ok(done == 1)
    }
}

/// The value of a [`LOAD_VALUE`] row, if there was one.
fn value_of(row: Option<&Row>) -> Result<Option<serde_json::Value>, StoreError> {
    row.map(|r| Cols::new(r, "bot_state").json("value")).transpose()
}

/// The rows of a batch as the JSON array [`INSERT_SQLITE`] reads: one array per row, in its column order.
fn sqlite_batch(rows: &[NewDelivery]) -> Result<String, StoreError> {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.event_id,
                r.occurrence,
                r.channel.as_str(),
                r.route.as_str(),
                r.status.as_str(),
                r.fatigue_key.as_deref(),
                r.resolves,
                r.note.as_deref().map(clean),
                &r.message,
                r.created_at.timestamp_millis(),
                r.follow_up.map(FollowUp::as_str),
            )
        })
        .collect();
    serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(format!("delivery message not serialisable: {e}")))
}

fn delivery_from_row(row: &Row) -> Result<Delivery, StoreError> {
    let c = Cols::new(row, "deliveries");
    let message: Message = serde_json::from_value(c.json("message")?).map_err(|e| c.corrupt("message", e))?;
    let small = |col: &str| -> Result<i32, StoreError> {
        let v = c.int(col)?;
        i32::try_from(v).map_err(|e| c.corrupt(col, e))
    };
    Ok(Delivery {
        id: c.int("id")?,
        new: NewDelivery {
            event_id: c.int("event_id")?,
            occurrence: small("occurrence")?,
            channel: c.named("channel", Channel::parse)?,
            route: c.named("route", Route::parse)?,
            status: c.named("status", DeliveryStatus::parse)?,
            fatigue_key: c.opt_text("fatigue_key")?,
            resolves: c.flag("resolves")?,
            note: c.opt_text("note")?,
            message,
            created_at: c.time("created_at")?,
            follow_up: match c.opt_text("follow_up")? {
                Some(f) => Some(FollowUp::parse(&f).ok_or_else(|| c.corrupt("follow_up", f))?),
                None => None,
            },
        },
        attempts: small("attempts")?,
        last_error: c.opt_text("last_error")?,
        next_attempt_at: c.time("next_attempt_at")?,
        sent_at: c.opt_time("sent_at")?,
        closed_at: c.opt_time("closed_at")?,
    })
}

#[async_trait]
impl DeliveryStore for SqlStore {
    async fn enqueue(&self, rows: Vec<NewDelivery>) -> Result<usize, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        // One statement for the batch: atomic by itself, one round trip and one commit however many rows.
        let added = match &self.pool {
            Pool::Pg(pool) => super::postgres::enqueue_deliveries(pool, INSERT_PG.text, &rows).await,
            Pool::Lite(_) => {
                let batch = sqlite_batch(&rows)?;
                Q::fixed(&INSERT_SQLITE).bind(batch).execute(&self.pool).await
            }
        };
        let added = added.map_err(self.err("enqueue_deliveries"))?;
        Ok(usize::try_from(added).unwrap_or(usize::MAX))
    }

    async fn pending(&self, channel: Channel, limit: i64) -> Result<Vec<Delivery>, StoreError> {
        let rows = Q::fixed(&PENDING)
            .bind(channel.as_str())
            .bind(limit.max(1))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("pending_deliveries"))?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn mark_sent(&self, id: i64, attempts: i32, now: DateTime<Utc>) -> Result<(), StoreError> {
        Q::fixed(&SENT)
            .bind(id)
            .bind(i64::from(attempts))
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(self.err("mark_sent"))?;
        Ok(())
    }

    async fn mark_retry(&self, id: i64, attempts: i32, error: &str, next: DateTime<Utc>) -> Result<(), StoreError> {
        Q::fixed(&RETRY)
            .bind(id)
            .bind(i64::from(attempts))
            .bind(clean(error))
            .bind(next)
            .execute(&self.pool)
            .await
            .map_err(self.err("mark_retry"))?;
        Ok(())
    }

    async fn mark_failed(&self, id: i64, attempts: i32, error: &str) -> Result<(), StoreError> {
        Q::fixed(&FAILED)
            .bind(id)
            .bind(i64::from(attempts))
            .bind(clean(error))
            .execute(&self.pool)
            .await
            .map_err(self.err("mark_failed"))?;
        Ok(())
    }

    async fn requeue_failed(&self, channel: Option<Channel>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let q = match channel {
            Some(c) => Q::fixed(&REQUEUE_ONE).bind(now).bind(c.as_str()),
            None => Q::fixed(&REQUEUE_ALL).bind(now),
        };
        let done = q.execute(&self.pool).await.map_err(self.err("requeue_failed"))?;
        Ok(done)
    }

    async fn delivery_counts(&self) -> Result<Vec<DeliveryCount>, StoreError> {
        let rows = Q::fixed(&COUNTS).fetch_all(&self.pool).await.map_err(self.err("delivery_counts"))?;
        rows.iter()
            .map(|r| {
                let c = Cols::new(r, "deliveries");
                Ok(DeliveryCount {
                    channel: c.named("channel", Channel::parse)?,
                    status: c.named("status", DeliveryStatus::parse)?,
                    count: c.int("n")?,
                })
            })
            .collect()
    }

    async fn last_unsuppressed(&self, channel: Channel, key: &str) -> Result<Option<Delivery>, StoreError> {
        let row = Q::fixed(&LAST_UNSUPPRESSED)
            .bind(channel.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("last_unsuppressed"))?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    async fn suppressed_after(
        &self,
        channel: Channel,
        key: &str,
        after_id: i64,
    ) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
        let row = Q::fixed(&SUPPRESSED_AFTER)
            .bind(channel.as_str())
            .bind(key)
            .bind(after_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("suppressed_after"))?
            .ok_or_else(|| StoreError::Corrupt("suppressed_after: an aggregate returned no row".into()))?;
        let c = Cols::new(&row, "deliveries");
        Ok((c.int("n")?, c.opt_time("first")?))
    }

    async fn active_since(&self, channel: Channel, key: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = Q::fixed(&ACTIVE_SINCE)
            .bind(channel.as_str())
            .bind(key)
            .bind(true)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("active_since"))?
            .ok_or_else(|| StoreError::Corrupt("active_since: an aggregate returned no row".into()))?;
        Cols::new(&row, "deliveries").opt_time("since")
    }

    async fn resolved_after(&self, channel: Channel, key: &str, after_id: i64) -> Result<bool, StoreError> {
        let row = Q::fixed(&RESOLVED_AFTER)
            .bind(channel.as_str())
            .bind(key)
            .bind(after_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("resolved_after"))?;
        Ok(row.is_some())
    }

    async fn open_follow_ups(&self, limit: i64) -> Result<Vec<Delivery>, StoreError> {
        let rows = Q::fixed(&OPEN_FOLLOW_UPS)
            .bind(limit.max(1))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("open_follow_ups"))?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn close_follow_up(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        Q::fixed(&CLOSE_FOLLOW_UP).bind(id).bind(now).execute(&self.pool).await.map_err(self.err("close_follow_up"))?;
        Ok(())
    }

    async fn acknowledge(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Q::fixed(&ACKNOWLEDGE).bind(now).execute(&self.pool).await.map_err(self.err("acknowledge"))
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        Q::fixed(&PRUNE).bind(before).execute(&self.pool).await.map_err(self.err("prune_deliveries"))
    }

    async fn mutes(&self, now: DateTime<Utc>) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let Some(v) = self.load_value(MUTES_KEY).await? else { return Ok(Vec::new()) };
        let all: std::collections::BTreeMap<String, DateTime<Utc>> =
            serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("bot_state.{MUTES_KEY}: {e}")))?;
        Ok(all.into_iter().filter(|(_, until)| *until > now).collect())
    }

    async fn set_mute(&self, kind: &str, until: DateTime<Utc>, event: NewEvent) -> Result<(), StoreError> {
        let mut uow = self.begin_sql().await?;
        let row = Q::fixed(&LOAD_VALUE).bind(MUTES_KEY).fetch_optional(&mut uow.tx).await.map_err(self.err("mutes"))?;
        let stored = value_of(row.as_ref())?;
        let mut all: std::collections::BTreeMap<String, DateTime<Utc>> =
            stored.and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
        all.insert(kind.to_owned(), until);
        let value = serde_json::to_value(&all).map_err(|e| StoreError::Corrupt(format!("mutes: {e}")))?;
        Q::fixed(&SAVE_VALUE).bind(MUTES_KEY).bind(value).execute(&mut uow.tx).await.map_err(self.err("set_mute"))?;
        uow.append(event);
        Box::new(uow).commit().await.map(|_| ())
    }
}
