-- Who read the log (api_reads.py): every compliance search, export, stream, flag search and FHIR
-- search, the statistics and the list of these reads itself, one row per answered call, written
-- before the answer leaves. ``filter`` is the request as given and may hold a personal identity
-- number: it is kept here only, never in logs, traces or metrics.
CREATE TABLE log_read (
    read_id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    read_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    user_hsa_id text        NOT NULL,             -- the token's subject
    care_unit   text        NOT NULL,             -- '' when the token names none
    care_giver  text        NOT NULL,
    action      text        NOT NULL,             -- search | export | stream | flags.search | …
    filter      jsonb       NOT NULL,
    returned    bigint                            -- records answered (written, for an export);
                                                  -- NULL for a stream, which has no end when opened
);
CREATE INDEX log_read_user ON log_read (user_hsa_id, read_id);
CREATE INDEX log_read_time ON log_read (read_at);

-- Append-only as the log's records: the same refuse_change() (0001) on every UPDATE, DELETE and
-- TRUNCATE, whoever asks.
CREATE TRIGGER log_read_append_only BEFORE UPDATE OR DELETE ON log_read
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER log_read_no_truncate BEFORE TRUNCATE ON log_read
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
