-- The engagement index: live records and tombstones (deleted = true), identified by the SHA-256
-- of the nine identity fields (key). version_* is the winning transaction's (event time, content
-- time, event id); a transaction with a smaller or equal version never changes the row.
-- The primary key leads with (patient, service_domain): it is also FindContent's index (one
-- index to maintain instead of two), and a patient's rows sit together.
CREATE TABLE engagements (
    key bytea NOT NULL,
    patient text NOT NULL,
    service_domain text NOT NULL,
    categorization text NOT NULL,
    logical_address text NOT NULL,
    business_object_instance_identifier text NOT NULL,
    clinical_process_interest_id text NOT NULL,
    source_system text NOT NULL,
    data_controller text NOT NULL,
    owner text NOT NULL,
    most_recent_content text NOT NULL,
    deleted boolean NOT NULL,
    version_time timestamptz NOT NULL,
    version_content text COLLATE "C" NOT NULL,
    version_event text COLLATE "C" NOT NULL,
    creation_time timestamptz NOT NULL,
    update_time timestamptz NOT NULL,
    PRIMARY KEY (patient, service_domain, key)
);

-- Idempotence marks, written in the same transaction as the rows.
CREATE TABLE processed_events (
    event_id text PRIMARY KEY
);

-- Transactional outbox of IndexChange events: committed with the rows, published after commit,
-- deleted once the broker acknowledged them (at-least-once; event ids are deterministic).
-- One row per ingest batch (arrays in message order): one insert and one delete per batch.
CREATE TABLE outbox (
    seq bigserial PRIMARY KEY,
    event_ids text[] NOT NULL,
    message_keys text[] NOT NULL,
    payloads bytea[] NOT NULL
);
-- Out of line without compression: compressing megabytes of short-lived protobuf costs CPU.
ALTER TABLE outbox ALTER COLUMN payloads SET STORAGE EXTERNAL;
ALTER TABLE outbox ALTER COLUMN event_ids SET STORAGE EXTERNAL;
ALTER TABLE outbox ALTER COLUMN message_keys SET STORAGE EXTERNAL;

-- Coverage statistics: live engagements per data controller and (serviceDomain, categorization),
-- kept up to date in the ingest transaction instead of scanning the index.
CREATE TABLE coverage_counts (
    data_controller text NOT NULL,
    service_domain text NOT NULL,
    categorization text NOT NULL,
    live integer NOT NULL,
    PRIMARY KEY (data_controller, service_domain, categorization)
);
