-- Consent state: every relation, consent, block, lift, emergency access and protected-identity
-- mark as one row each, never deleted. Revocation and expiry close a row's window, so a decision
-- can be re-evaluated as it stood at any past time (registered_at, valid_from/to, revoked_at).
CREATE TABLE records (
    id uuid PRIMARY KEY,
    kind text NOT NULL
        CHECK (kind IN ('relation', 'consent', 'block', 'lift', 'emergency', 'protected_identity')),
    patient_id text NOT NULL,
    care_giver text,
    care_unit text,
    user_hsa_id text,
    block_id uuid REFERENCES records (id),
    reason text NOT NULL DEFAULT '',
    valid_from timestamptz NOT NULL,
    valid_to timestamptz,
    registered_at timestamptz NOT NULL,
    registered_by text NOT NULL,
    revoked_at timestamptz,
    revoked_by text,
    expired_at timestamptz,  -- when the expiry event was written to the outbox
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX records_by_patient ON records (patient_id);
CREATE INDEX records_due_to_expire ON records (valid_to)
    WHERE valid_to IS NOT NULL AND expired_at IS NULL AND revoked_at IS NULL;

-- Transactional outbox: a ConsentEvent is written with the state change it announces and
-- published afterwards (at least once, in id order) by the relay.
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    patient_id text NOT NULL,
    payload bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;

-- Access events already checked (idempotence): written with the tasks and flags they caused.
CREATE TABLE checked_access_events (
    event_id text PRIMARY KEY,
    checked_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE follow_up_tasks (
    id uuid PRIMARY KEY,
    access_event_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('emergency_access', 'protected_identity_access')),
    patient_id text NOT NULL,
    user_hsa_id text NOT NULL,
    care_unit text NOT NULL,
    care_giver text NOT NULL,
    reason text NOT NULL,
    access_time timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'open',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (access_event_id, kind)
);

CREATE TABLE violations (
    id uuid PRIMARY KEY,
    access_event_id text NOT NULL,
    patient_id text NOT NULL,
    user_hsa_id text NOT NULL,
    care_unit text NOT NULL,
    data_controller text NOT NULL,
    engagement_unit text NOT NULL,
    reason_code text NOT NULL,
    access_time timestamptz NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX violations_by_event ON violations (access_event_id);
