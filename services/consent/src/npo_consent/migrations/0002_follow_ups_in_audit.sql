-- The follow-ups of every access (emergency access, protected identity) are the audit
-- service's: it flags them on the access log and records the reviews. Every task this table
-- held was flagged there as well, from the same access events, so nothing moves; the table goes.
DROP TABLE IF EXISTS follow_up_tasks;
