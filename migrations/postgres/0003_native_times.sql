-- Every instant becomes TIMESTAMPTZ (it was BIGINT epoch milliseconds), so Grafana panels and SQL users read
-- times as times. The conversion is exact: epoch + n milliseconds. Indexes and keys on these columns are rebuilt
-- by ALTER TYPE. SQLite has no time type and keeps epoch milliseconds (migrations/sqlite has no 0003).

CREATE FUNCTION mcbot_ms_to_timestamptz(ms BIGINT) RETURNS TIMESTAMPTZ
    LANGUAGE SQL IMMUTABLE STRICT
    AS $$ SELECT TIMESTAMPTZ 'epoch' + ms * INTERVAL '1 millisecond' $$;

ALTER TABLE job_runs
    ALTER COLUMN scheduled_at TYPE TIMESTAMPTZ USING mcbot_ms_to_timestamptz(scheduled_at),
    ALTER COLUMN started_at TYPE TIMESTAMPTZ USING mcbot_ms_to_timestamptz(started_at),
    ALTER COLUMN finished_at TYPE TIMESTAMPTZ USING mcbot_ms_to_timestamptz(finished_at);
ALTER TABLE orders ALTER COLUMN created_at TYPE TIMESTAMPTZ USING mcbot_ms_to_timestamptz(created_at);
ALTER TABLE fills ALTER COLUMN ts TYPE TIMESTAMPTZ USING mcbot_ms_to_timestamptz(ts);
ALTER TABLE equity_snapshots ALTER COLUMN ts TYPE TIMESTAMPTZ USING mcbot_ms_to_timestamptz(ts);
ALTER TABLE signals ALTER COLUMN ts TYPE TIMESTAMPTZ USING mcbot_ms_to_timestamptz(ts);
ALTER TABLE candles ALTER COLUMN open_time TYPE TIMESTAMPTZ USING mcbot_ms_to_timestamptz(open_time);
ALTER TABLE reports
    ALTER COLUMN period_start TYPE TIMESTAMPTZ USING mcbot_ms_to_timestamptz(period_start),
    ALTER COLUMN period_end TYPE TIMESTAMPTZ USING mcbot_ms_to_timestamptz(period_end);
ALTER TABLE heartbeats ALTER COLUMN ts TYPE TIMESTAMPTZ USING mcbot_ms_to_timestamptz(ts);
ALTER TABLE leases ALTER COLUMN expires_at TYPE TIMESTAMPTZ USING mcbot_ms_to_timestamptz(expires_at);
ALTER TABLE events ALTER COLUMN ts TYPE TIMESTAMPTZ USING mcbot_ms_to_timestamptz(ts);
ALTER TABLE event_cursors
    ALTER COLUMN lease_until TYPE TIMESTAMPTZ USING mcbot_ms_to_timestamptz(lease_until),
    ALTER COLUMN updated_at TYPE TIMESTAMPTZ USING mcbot_ms_to_timestamptz(updated_at);

DROP FUNCTION mcbot_ms_to_timestamptz(BIGINT);
