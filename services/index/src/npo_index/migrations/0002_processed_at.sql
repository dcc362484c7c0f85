-- When each event was processed, so that marks older than the updates topic's retention can be
-- forgotten (store.forget_processed). Rows from before this migration get its time.
ALTER TABLE processed_events ADD COLUMN processed_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);
