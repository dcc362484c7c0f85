-- The routing table (TAK): producers' endpoints and consumer authorisations.
CREATE TABLE routes (
    logical_address text PRIMARY KEY,
    endpoint text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE authorisations (
    consumer_system text NOT NULL,
    logical_address text NOT NULL,
    category text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_system, logical_address, category)
);
