//! The PostgreSQL adapter: sqlx's Postgres driver with the columns' own types — money as `NUMERIC` (exact
//! `rust_decimal`), instants as `TIMESTAMPTZ`, details as `JSONB` — so Grafana and SQL users read the tables
//! as they are, and PostgreSQL-only SQL (advisory locks, arrays) is plain code here, not a rewrite.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use mcbot_stages::domain::Decimal;
use mcbot_stages::ports::{FollowUp, NewDelivery, NewEvent, StoreError};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row as _, Transaction};

use super::codec::clean;
use super::dialect::Backend;
use super::errors::map_sqlx;
use super::query::{Arg, Sql};
use super::sql_store::PoolSettings;

/// Schema of the PostgreSQL backend, compiled into the binary.
pub(crate) static MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The advisory lock key that serialises event appenders ("mcbot-ev" in ASCII).
const APPEND_LOCK: i64 = 0x6d63_626f_742d_6576;

pub(crate) static LOCK_EVENTS: Sql = Sql::postgres("SELECT pg_advisory_xact_lock($1)");

/// A whole batch of events in one statement whatever its size: the columns travel as arrays, numbered from the
/// current maximum id in their order (`WITH ORDINALITY`). One text for every batch keeps one prepared statement.
pub(crate) static APPEND_EVENTS: Sql = Sql::postgres(
    "INSERT INTO events (id, ts, kind, severity, run_id, symbol, message, payload, dedup_key) \
     SELECT b.m + t.n, t.ts, t.kind, t.severity, t.run_id, t.symbol, t.message, t.payload, t.dedup_key \
     FROM (SELECT COALESCE(MAX(id), 0) AS m FROM events) AS b \
     CROSS JOIN unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::jsonb[], $8::text[]) WITH ORDINALITY AS t(ts, kind, severity, run_id, symbol, message, payload, dedup_key, n) \
     RETURNING id",
);

/// Connects a pool. A PostgreSQL connection can go stale (server restart, idle cut by a proxy), so each is
/// tested before use. Connections are named `mcbot` in `pg_stat_activity` unless the URL names them
/// (`?application_name=mcbot-a`), so replicas on one server can be told apart.
pub(crate) async fn connect(url: &str, settings: &PoolSettings) -> Result<PgPool, sqlx::Error> {
    let mut options = PgConnectOptions::from_str(url)?;
    if options.get_application_name().is_none() {
        options = options.application_name("mcbot");
    }
    PgPoolOptions::new()
        .max_connections(settings.max_connections.max(1))
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(true)
        .connect_with(options)
        .await
}

/// `sql` with `args` bound as the columns' native types.
pub(crate) fn query(sql: &str, args: Vec<Arg>, persistent: bool) -> Query<'_, Postgres, PgArguments> {
    let mut q = sqlx::query(sql).persistent(persistent);
    for a in args {
        q = match a {
            Arg::Text(v) => q.bind(v),
            Arg::Int(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Dec(v) => q.bind(v),
            Arg::Time(v) => q.bind(v.map(clamp)),
            Arg::Json(v) => q.bind(v),
        };
    }
    q
}

/// `TIMESTAMPTZ` spans 4713 BC to 294276 AD; chrono reaches further. Open-ended queries ("all fills") pass
/// chrono's extremes, which PostgreSQL would refuse, so they are brought inside its range. No recorded instant
/// is anywhere near either end.
fn clamp(t: DateTime<Utc>) -> DateTime<Utc> {
    let lo = NaiveDate::from_ymd_opt(-4712, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).map(|d| d.and_utc());
    let hi = NaiveDate::from_ymd_opt(294_275, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).map(|d| d.and_utc());
    match (lo, hi) {
        (Some(lo), _) if t < lo => lo,
        (_, Some(hi)) if t > hi => hi,
        _ => t,
    }
}

/// Appends `events` inside `tx` under the appenders' lock; their ids, in order.
pub(crate) async fn append_events(
    tx: &mut Transaction<'static, Postgres>,
    events: &[NewEvent],
) -> Result<Vec<i64>, StoreError> {
    let err = |e| map_sqlx(Backend::Postgres, "append_events", e);
    sqlx::query(LOCK_EVENTS.text).bind(APPEND_LOCK).execute(&mut **tx).await.map_err(err)?;
    let n = events.len();
    let (mut ts, mut kind, mut severity, mut run_id, mut symbol, mut message, mut payload, mut dedup) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for e in events {
        ts.push(clamp(e.ts));
        kind.push(e.kind.as_str());
        severity.push(e.severity.as_str());
        run_id.push(e.run_id.as_deref());
        symbol.push(e.symbol.as_ref().map(|s| s.as_str()));
        message.push(clean(&e.message));
        payload.push(sqlx::types::Json(&e.payload));
        dedup.push(e.dedup_key.as_deref());
    }
    let rows = sqlx::query(APPEND_EVENTS.text)
        .bind(ts)
        .bind(kind)
        .bind(severity)
        .bind(run_id)
        .bind(symbol)
        .bind(message)
        .bind(payload)
        .bind(dedup)
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
    let mut ids = rows
        .iter()
        .map(|r| r.try_get::<i64, _>("id").map_err(|e| StoreError::Corrupt(format!("events.id: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort_unstable();
    Ok(ids)
}

/// Writes a batch of deliveries with one statement (`sql`, the outbox's array insert); the rows added (a row
/// already there for its event, occurrence and channel is left as it is).
pub(crate) async fn enqueue_deliveries(pool: &PgPool, sql: &str, rows: &[NewDelivery]) -> Result<u64, sqlx::Error> {
    let n = rows.len();
    let mut cols = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for r in rows {
        cols.0.push(r.event_id);
        cols.1.push(i64::from(r.occurrence));
        cols.2.push(r.channel.as_str());
        cols.3.push(r.route.as_str());
        cols.4.push(r.status.as_str());
        cols.5.push(r.fatigue_key.as_deref());
        cols.6.push(r.resolves);
        cols.7.push(r.note.as_deref().map(clean));
        cols.8.push(sqlx::types::Json(&r.message));
        cols.9.push(clamp(r.created_at));
        cols.10.push(r.follow_up.map(FollowUp::as_str));
    }
    let done = sqlx::query(sql)
        .bind(cols.0)
        .bind(cols.1)
        .bind(cols.2)
        .bind(cols.3)
        .bind(cols.4)
        .bind(cols.5)
        .bind(cols.6)
        .bind(cols.7)
        .bind(cols.8)
        .bind(cols.9)
        .bind(cols.10)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Typed column reads for [`super::codec::Cols`].
pub(crate) mod decode {
    use super::*;

    pub(crate) fn opt_decimal(row: &PgRow, col: &str) -> Result<Option<Decimal>, sqlx::Error> {
        row.try_get::<Option<Decimal>, _>(col)
    }

    pub(crate) fn opt_time(row: &PgRow, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        row.try_get::<Option<DateTime<Utc>>, _>(col)
    }

    pub(crate) fn opt_json(row: &PgRow, col: &str) -> Result<Option<serde_json::Value>, sqlx::Error> {
        row.try_get::<Option<serde_json::Value>, _>(col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_ended_times_fit_timestamptz() {
        use chrono::Datelike;
        assert_eq!(clamp(DateTime::<Utc>::MIN_UTC).year(), -4712);
        // chrono ends (year 262 142) inside PostgreSQL's range.
        assert_eq!(clamp(DateTime::<Utc>::MAX_UTC), DateTime::<Utc>::MAX_UTC);
        let now = Utc::now();
        assert_eq!(clamp(now), now);
    }
}
