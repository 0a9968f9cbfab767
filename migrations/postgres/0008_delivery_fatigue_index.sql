-- The fatigue check looks up the last delivery of a key that was not suppressed. A condition that persists leaves
-- a long tail of suppressed rows behind it, which a search through the key's index would read one by one on every
-- repeat; this index holds only the rows the check can answer with, so the lookup is one probe however long the
-- condition lasts. Rows never change to or from 'suppressed' after they are written. Keep in step with
-- migrations/sqlite/0008_delivery_fatigue_index.sql.
CREATE INDEX deliveries_unsuppressed_idx ON deliveries (channel, fatigue_key, id) WHERE status <> 'suppressed';
