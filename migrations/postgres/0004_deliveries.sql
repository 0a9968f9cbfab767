-- The notification outbox: one row per (event, repeat, channel), written by the notification consumer and worked
-- off by the delivery worker. A row stays pending across a crash or a channel outage until it is sent. Keep in
-- step with migrations/sqlite/0004_deliveries.sql.
CREATE TABLE deliveries (
    id              BIGSERIAL PRIMARY KEY,
    event_id        BIGINT NOT NULL,
    occurrence      BIGINT NOT NULL DEFAULT 0,
    channel         TEXT NOT NULL,
    route           TEXT NOT NULL CHECK (route IN ('trades', 'alerts', 'reports')),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'suppressed')),
    fatigue_key     TEXT,
    resolves        BOOLEAN NOT NULL DEFAULT FALSE,
    note            TEXT,
    message         JSONB NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ,
    UNIQUE (event_id, occurrence, channel)
);
-- The worker reads a channel's pending rows in id order; fatigue looks up a channel's rows by key.
CREATE INDEX deliveries_pending_idx ON deliveries (channel, status, id);
CREATE INDEX deliveries_fatigue_idx ON deliveries (channel, fatigue_key, id);
