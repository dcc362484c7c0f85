-- The tamper-evident access log: append-only records partitioned by month of event time,
-- one hash chain per writer chain (Kafka partition), signed checkpoints, derived flags.

CREATE TABLE record (
    chain        text        NOT NULL,  -- "access-<partition>", "consent-<partition>", "review"
    seq          bigint      NOT NULL,  -- 1, 2, 3 … without gaps within a chain
    kind         text        NOT NULL,  -- access | consent | review
    event_id     text        NOT NULL,
    event_time   timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL,
    patient_id   text        NOT NULL,
    user_hsa_id  text        NOT NULL,
    care_unit    text        NOT NULL,
    care_giver   text        NOT NULL,
    activity     smallint    NOT NULL,
    basis        smallint    NOT NULL,
    outcome      smallint    NOT NULL,
    purpose      text        NOT NULL,
    categories   text[]      NOT NULL,
    payload      bytea       NOT NULL,  -- the event, deterministic protobuf (or canonical JSON)
    subject      text        NOT NULL,  -- reviews: the reviewed event id or "flag:<id>"
    prev_hash    bytea       NOT NULL,
    hash         bytea       NOT NULL   -- sha256(prev_hash || canonical encoding of this row)
) PARTITION BY RANGE (event_time);

-- Idempotence: an event id is stored once (the partition key has to be part of a unique index;
-- a redelivered event carries the same event time, so it meets its first copy here).
CREATE UNIQUE INDEX record_event_id ON record (event_id, event_time);
CREATE INDEX record_chain_seq ON record (chain, seq);
CREATE INDEX record_patient_time ON record (patient_id, event_time);
CREATE INDEX record_user_time ON record (user_hsa_id, event_time);
CREATE INDEX record_unit_time ON record (care_unit, event_time);
CREATE INDEX record_giver_time ON record (care_giver, event_time);
CREATE INDEX record_review_subject ON record (subject) WHERE kind = 'review';
-- Follow-up searches (denied/partial outcomes, emergency access) and rule searches by time.
CREATE INDEX record_followup_time ON record (event_time) WHERE outcome <> 1 OR basis = 4;

-- Append-only at the database level too: no UPDATE, DELETE or TRUNCATE, whoever asks.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER record_append_only BEFORE UPDATE OR DELETE ON record
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER record_no_truncate BEFORE TRUNCATE ON record
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- The next link of each chain; locked FOR UPDATE by the one batch that extends the chain.
CREATE TABLE chain_head (
    chain      text   PRIMARY KEY,
    seq        bigint NOT NULL DEFAULT 0,
    hash       bytea  NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'
);

-- Ed25519 signature over (chain, seq, hash, signed_at): the chain was exactly this at seq.
CREATE TABLE checkpoint (
    chain      text        NOT NULL,
    seq        bigint      NOT NULL,
    hash       bytea       NOT NULL,
    signed_at  timestamptz NOT NULL,
    key_id     text        NOT NULL,
    signature  bytea       NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE TRIGGER checkpoint_append_only BEFORE UPDATE OR DELETE ON checkpoint
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER checkpoint_no_truncate BEFORE TRUNCATE ON checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Sample-check flags: derived from records (re-derivable), one per rule and record.
CREATE TABLE flag (
    flag_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule        text        NOT NULL,
    event_id    text        NOT NULL,
    event_time  timestamptz NOT NULL,
    patient_id  text        NOT NULL,
    user_hsa_id text        NOT NULL,
    care_unit   text        NOT NULL,
    detail      text        NOT NULL,
    flagged_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rule, event_id)
);
CREATE INDEX flag_rule_time ON flag (rule, event_time);
CREATE INDEX flag_time ON flag (event_time);
CREATE TRIGGER flag_no_delete BEFORE DELETE ON flag
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- How far the periodic sweep (rule "many patients per reader per hour") has read each chain.
CREATE TABLE sweep_position (
    chain text PRIMARY KEY,
    seq   bigint NOT NULL
);
CREATE INDEX flag_user_rule_time ON flag (user_hsa_id, rule, event_time);

-- Context from consent events: patient relations (rule "no active relation").
CREATE TABLE relation (
    record_id   text PRIMARY KEY,
    patient_id  text        NOT NULL,
    care_unit   text        NOT NULL,
    care_giver  text        NOT NULL,
    valid_from  timestamptz,
    valid_to    timestamptz,
    ended_at    timestamptz
);
CREATE INDEX relation_patient_unit ON relation (patient_id, care_unit);

-- Reference data for the kinship rule (surname / address): from the population and staff
-- registers. Addresses are stored as keyed normalised digests, never in clear.
CREATE TABLE person_register (
    person_key  text PRIMARY KEY,           -- patient id, or user HSA-id for staff
    surname     text NOT NULL,
    address_digest text NOT NULL DEFAULT ''
);

-- Partitions: one per month, created ahead by the writer (ensure_partition) as event times need.
CREATE FUNCTION ensure_month_partition(at timestamptz) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    first_day date := date_trunc('month', at AT TIME ZONE 'UTC')::date;
    name text := format('record_%s', to_char(first_day, 'YYYY_MM'));
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('npo_audit.partition.' || name));
    IF to_regclass(quote_ident(current_schema()) || '.' || name) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF record FOR VALUES FROM (%L) TO (%L)',
            name, first_day::timestamp AT TIME ZONE 'UTC',
            (first_day + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    END IF;
END $$;
