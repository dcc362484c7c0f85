-- Routes for one category's national read contract (RIV-TA): the responder's URL, in place of
-- the producer's JSON route for that category.
CREATE TABLE contract_routes (
    logical_address text NOT NULL,
    category text NOT NULL,
    protocol text NOT NULL,
    endpoint text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (logical_address, category)
);
