-- The event log, consumer cursors, the versioned trading state and fenced ledger claims. Keep in step with
-- migrations/postgres/0002_event_log.sql. Upgrades a database written by the previous release in place: every
-- stored risk event becomes an event, in its original order, its old kind kept in the payload as `legacy_kind`.

-- One sequenced log of every fact the bot records. Ids are assigned under a write lock (SQLite has one writer) as
-- max + 1, so they are gap-free and commit in id order: a reader that has seen id N never later finds a new
-- event below N (the trap of sequence-numbered outboxes).
CREATE TABLE events (
    id        BIGINT PRIMARY KEY,
    ts        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    severity  TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical', 'emergency')),
    run_id    TEXT,
    symbol    TEXT,
    message   TEXT NOT NULL,
    payload   TEXT NOT NULL,
    dedup_key TEXT
);
CREATE INDEX events_ts_idx ON events (ts);
CREATE INDEX events_kind_idx ON events (kind, id);

INSERT INTO events (id, ts, kind, severity, run_id, symbol, message, payload, dedup_key)
SELECT ROW_NUMBER() OVER (ORDER BY id), ts,
    CASE kind
        WHEN 'kill_switch' THEN 'breaker_tripped'
        WHEN 'daily_loss' THEN 'breaker_tripped'
        WHEN 'weekly_loss' THEN 'breaker_tripped'
        WHEN 'max_drawdown' THEN 'safe_mode_on'
        WHEN 'stop_loss' THEN 'stop_loss'
        WHEN 'take_profit' THEN 'take_profit'
        WHEN 'stale_data' THEN 'stale_data'
        WHEN 'reconcile_drift' THEN 'reconcile_drift'
        WHEN 'reconcile_corrected' THEN 'reconcile_corrected'
        WHEN 'order_not_placed' THEN 'reconcile_closed_unplaced'
        WHEN 'order_outcome_unknown' THEN 'order_outcome_unknown'
        WHEN 'exchange_banned' THEN 'banned'
        WHEN 'exchange_auth' THEN 'banned'
        ELSE 'job_failed'
    END,
    severity, run_id, NULL, message, json_object('legacy_kind', kind), NULL
FROM risk_events;
DROP TABLE risk_events;

-- Where each consumer of the log has got to, and which process holds it (a fenced lease: a replica that lost
-- the lease cannot move the cursor).
CREATE TABLE event_cursors (
    consumer    TEXT PRIMARY KEY,
    last_id     BIGINT NOT NULL,
    holder      TEXT,
    lease_until BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- The trading state is versioned: a writer updates only the version it read, so no writer overwrites another.
-- A state saved by the previous release is version 1 (0 means never saved).
ALTER TABLE bot_state ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
UPDATE bot_state SET version = 1;

-- Who holds a ledger claim: the token fences the claimant's writes once its claim is taken over; pid and host
-- let a claim of a process that died on this host be taken over at once.
ALTER TABLE job_runs ADD COLUMN claim_token TEXT;
ALTER TABLE job_runs ADD COLUMN claimant_pid BIGINT;
ALTER TABLE job_runs ADD COLUMN claimant_host TEXT;
