-- Follow-ups of a delivery after it was sent: an emergency repeats until someone acknowledges it, a warning about
-- a condition that can clear escalates to critical when it is still active after a while. `closed_at` ends the
-- follow-up (acknowledged, escalated, or the condition cleared). Keep in step with
-- migrations/postgres/0007_delivery_follow_ups.sql.
ALTER TABLE deliveries ADD COLUMN follow_up TEXT CHECK (follow_up IN ('repeat', 'escalate'));
ALTER TABLE deliveries ADD COLUMN closed_at BIGINT;
-- The worker looks up the open follow-ups on every pass; there are few, and the index keeps it so.
CREATE INDEX deliveries_follow_up_idx ON deliveries (id) WHERE follow_up IS NOT NULL AND closed_at IS NULL;
-- A follow-up ends when a resolving delivery of its key follows it: found without reading the key's other rows.
CREATE INDEX deliveries_resolves_idx ON deliveries (channel, fatigue_key, id) WHERE resolves = TRUE;
-- Pruning deletes old finished rows by time.
CREATE INDEX deliveries_created_idx ON deliveries (created_at);
