//! The event log: appends inside a unit of work's transaction, reads by cursor, retention, and the consumer
//! cursors with their fenced leases.
//!
//! Ids are assigned as `max(id) + 1` by the inserting statement itself, under a lock that every appender takes
//! first (a transaction-scoped advisory lock on PostgreSQL; SQLite has one writer at a time anyway). Appenders
//! therefore commit in id order and the log is gap-free: a consumer that has read up to id N can never later find
//! a new event below N, which a plain sequence cannot promise (ids are drawn at insert, commits land in any order).

use chrono::{DateTime, Utc};
use mcbot_stages::domain::Symbol;
use mcbot_stages::ports::{
    ConsumerCursor, ConsumerCursors, Event, EventKind, EventQuery, NewEvent, Severity, StoreError,
};

use super::SqlStore;
use super::codec::{Cols, clean};
use super::dialect::Backend;
use super::errors::map_sqlx;
use super::query::{Q, Row, Sql, Tx};

/// Rows per INSERT on SQLite: 9 parameters each, far below its 32 766 limit.
const BATCH: usize = 500;
const COLUMNS: &str = "id, ts, kind, severity, run_id, symbol, message, payload, dedup_key";

static PRUNE: Sql = Sql::new("DELETE FROM events WHERE ts < $1");
static CLAIM_CURSOR: Sql = Sql::new(
    "INSERT INTO event_cursors (consumer, last_id, holder, lease_until, updated_at) VALUES ($1, 0, $2, $3, $4) \
     ON CONFLICT (consumer) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until \
     WHERE event_cursors.holder = excluded.holder OR event_cursors.lease_until <= $4 \
     RETURNING last_id",
);
static ADVANCE_CURSOR: Sql = Sql::new(
    "UPDATE event_cursors SET last_id = $3, updated_at = $4 WHERE consumer = $1 AND holder = $2 AND last_id <= $3",
);
/// The same on PostgreSQL, committed without waiting for its WAL flush (`synchronous_commit` off for this one
/// transaction): the flush is a disk sync, most of a pass's time there, and the only thing a server crash can
/// cost is this advance, never more than it — WAL is replayed in order, so an advance can only be lost together
/// with everything after it, never while a later write survives. A lost advance hands the batch over again,
/// which every handler takes (at least once, idempotent by event id). The event log itself, and what the
/// handlers write, keep their synchronous commits.
static ADVANCE_CURSOR_PG: Sql = Sql::postgres(
    "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true) AS setting) \
     UPDATE event_cursors SET last_id = $3, updated_at = $4 FROM relaxed \
     WHERE consumer = $1 AND holder = $2 AND last_id <= $3",
);

/// Every cursor beside the log's head, in one statement (one snapshot); the head row comes out even when no
/// consumer has a cursor yet.
static CURSORS: Sql = Sql::new(
    "SELECT h.head, c.consumer, c.last_id, c.updated_at \
     FROM (SELECT COALESCE(MAX(id), 0) AS head FROM events) AS h \
     LEFT JOIN event_cursors AS c ON 1 = 1 ORDER BY c.consumer",
);

/// The fixed statements, for the catalogue.
pub(crate) static STATEMENTS: &[&Sql] = &[&PRUNE, &CLAIM_CURSOR, &ADVANCE_CURSOR, &ADVANCE_CURSOR_PG, &CURSORS];

/// Example texts of the statements built at run time, for the catalogue.
pub(crate) fn built_examples() -> Vec<(Option<Backend>, String)> {
    let q = EventQuery { after: 0, kinds: vec![EventKind::Started], min_severity: Some(Severity::Warning), limit: 1 };
    vec![
        (Some(Backend::Sqlite), insert_statement(2)),
        (None, read_statement(&q).0),
        (None, recent_statement(Severity::Info).0),
    ]
}

/// Writes `events` in order inside `tx`; returns their ids.
pub(crate) async fn append(tx: &mut Tx, events: &[NewEvent]) -> Result<Vec<i64>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let tx = match tx {
        Tx::Pg(tx) => return super::postgres::append_events(tx, events).await,
        Tx::Lite(_) => tx,
    };
    let mut ids = Vec::with_capacity(events.len());
    for chunk in events.chunks(BATCH) {
        let mut q = Q::built(insert_statement(chunk.len())).persistent(chunk.len() == 1 || chunk.len() == BATCH);
        for (k, e) in chunk.iter().enumerate() {
            q = q
                .bind(i64::try_from(k + 1).unwrap_or(i64::MAX))
                .bind(e.ts)
                .bind(e.kind.as_str())
                .bind(e.severity.as_str())
                .bind(e.run_id.clone())
                .bind(e.symbol.as_ref().map(|s| s.as_str().to_owned()))
                .bind(clean(&e.message))
                .bind(e.payload.clone())
                .bind(e.dedup_key.clone());
        }
        let rows = q.fetch_all(&mut *tx).await.map_err(|e| map_sqlx(Backend::Sqlite, "append_events", e))?;
        let mut got: Vec<i64> =
            rows.iter().map(|r| Cols::new(r, "events").int("id")).collect::<Result<_, StoreError>>()?;
        got.sort_unstable();
        ids.extend(got);
    }
    Ok(ids)
}

/// SQLite's append: `INSERT ... SELECT base + k, ... FROM (max id) CROSS JOIN (VALUES ...)`. One statement
/// numbers the whole batch from the current maximum, so SQLite takes its write lock at the first statement and
/// sees the maximum as of the lock.
fn insert_statement(rows: usize) -> String {
    let mut values = Vec::with_capacity(rows);
    for r in 0..rows {
        let p: Vec<String> = (1..=9).map(|c| format!("${}", r * 9 + c)).collect();
        values.push(format!("({})", p.join(", ")));
    }
    format!(
        "INSERT INTO events ({COLUMNS}) \
         SELECT b.m + v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, \
         v.column8, v.column9 \
         FROM (SELECT COALESCE(MAX(id), 0) AS m FROM events) AS b CROSS JOIN (VALUES {}) AS v \
         RETURNING id",
        values.join(", ")
    )
}

fn event_from_row(row: &Row) -> Result<Event, StoreError> {
    let c = Cols::new(row, "events");
    let symbol = c.opt_text("symbol")?.map(|s| Symbol::new(&s).map_err(|e| c.corrupt("symbol", e))).transpose()?;
    Ok(Event {
        id: c.int("id")?,
        event: NewEvent {
            ts: c.time("ts")?,
            kind: c.named("kind", EventKind::parse)?,
            severity: c.named("severity", Severity::parse)?,
            run_id: c.opt_text("run_id")?,
            symbol,
            message: c.text("message")?,
            payload: c.json("payload")?,
            dedup_key: c.opt_text("dedup_key")?,
        },
    })
}

const SELECT: &str = "SELECT id, ts, kind, severity, run_id, symbol, message, payload, dedup_key FROM events";

/// Severities at or above `min`, as stored names.
fn severities_from(min: Severity) -> Vec<&'static str> {
    [Severity::Info, Severity::Warning, Severity::Critical, Severity::Emergency]
        .into_iter()
        .filter(|s| *s >= min)
        .map(Severity::as_str)
        .collect()
}

/// `SELECT ... WHERE id > $1 [AND kind IN (..)] [AND severity IN (..)] ORDER BY id LIMIT $n`, and the texts to
/// bind between the cursor (`$1`) and the limit (last).
fn read_statement(q: &EventQuery) -> (String, Vec<&'static str>) {
    let mut sql = format!("{SELECT} WHERE id > $1");
    let mut args: Vec<&'static str> = Vec::new();
    let kinds: Vec<&'static str> = q.kinds.iter().map(|k| k.as_str()).collect();
    if !kinds.is_empty() {
        let ps: Vec<String> = (0..kinds.len()).map(|i| format!("${}", 2 + args.len() + i)).collect();
        sql.push_str(&format!(" AND kind IN ({})", ps.join(", ")));
        args.extend(kinds);
    }
    let sev = q.min_severity.map(severities_from).unwrap_or_default();
    if !sev.is_empty() {
        let ps: Vec<String> = (0..sev.len()).map(|i| format!("${}", 2 + args.len() + i)).collect();
        sql.push_str(&format!(" AND severity IN ({})", ps.join(", ")));
        args.extend(sev);
    }
    sql.push_str(&format!(" ORDER BY id LIMIT ${}", 2 + args.len()));
    (sql, args)
}

/// The newest events at or above `min`, newest first; the severities to bind before the limit (last).
fn recent_statement(min: Severity) -> (String, Vec<&'static str>) {
    let sev = severities_from(min);
    let ps: Vec<String> = (0..sev.len()).map(|i| format!("${}", i + 1)).collect();
    let sql = format!("{SELECT} WHERE severity IN ({}) ORDER BY id DESC LIMIT ${}", ps.join(", "), sev.len() + 1);
    (sql, sev)
}

impl SqlStore {
    /// See [`mcbot_stages::ports::Store::read_events`].
    pub(crate) async fn read_events_impl(&self, q: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let (sql, args) = read_statement(q);
        let mut query = Q::built(sql).persistent(q.kinds.is_empty()).bind(q.after);
        for a in args {
            query = query.bind(a);
        }
        let limit = if q.limit <= 0 { i64::MAX } else { q.limit };
        let rows = query.bind(limit).fetch_all(&self.pool).await.map_err(self.err("read_events"))?;
        rows.iter().map(event_from_row).collect()
    }

    /// See [`mcbot_stages::ports::Store::recent_events`].
    pub(crate) async fn recent_events_impl(&self, min: Severity, limit: i64) -> Result<Vec<Event>, StoreError> {
        let (sql, args) = recent_statement(min);
        let mut query = Q::built(sql);
        for a in args {
            query = query.bind(a);
        }
        let rows = query.bind(limit.max(0)).fetch_all(&self.pool).await.map_err(self.err("recent_events"))?;
        rows.iter().map(event_from_row).collect()
    }

    /// See [`mcbot_stages::ports::Store::prune_events`].
    pub(crate) async fn prune_events_impl(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = Q::fixed(&PRUNE).bind(before).execute(&self.pool).await.map_err(self.err("prune"))?;
        Ok(done)
    }

    /// See [`mcbot_stages::ports::Store::claim_consumer`].
    pub(crate) async fn claim_consumer_impl(
        &self,
        consumer: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<Option<i64>, StoreError> {
        let until = now.checked_add_signed(ttl).unwrap_or(now);
        let row = Q::fixed(&CLAIM_CURSOR)
            .bind(consumer)
            .bind(holder)
            .bind(until)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("claim_consumer"))?;
        row.as_ref().map(|r| Cols::new(r, "event_cursors").int("last_id")).transpose()
    }

    /// See [`mcbot_stages::ports::Store::advance_consumer`].
    pub(crate) async fn advance_consumer_impl(
        &self,
        consumer: &str,
        holder: &str,
        last_id: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let statement = match self.backend {
            Backend::Postgres => &ADVANCE_CURSOR_PG,
            Backend::Sqlite => &ADVANCE_CURSOR,
        };
        let done = Q::fixed(statement)
            .bind(consumer)
            .bind(holder)
            .bind(last_id)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(self.err("advance_consumer"))?;
        Ok(done == 1)
    }

    /// See [`mcbot_stages::ports::Store::consumer_cursors`].
    pub(crate) async fn consumer_cursors_impl(&self) -> Result<ConsumerCursors, StoreError> {
        let rows = Q::fixed(&CURSORS).fetch_all(&self.pool).await.map_err(self.err("consumer_cursors"))?;
        let mut out = ConsumerCursors::default();
        for row in &rows {
            let c = Cols::new(row, "event_cursors");
            out.head = c.int("head")?;
            if let Some(consumer) = c.opt_text("consumer")? {
                out.cursors.push(ConsumerCursor {
                    consumer,
                    last_id: c.int("last_id")?,
                    updated_at: c.time("updated_at")?,
                });
            }
        }
        Ok(out)
    }
}
