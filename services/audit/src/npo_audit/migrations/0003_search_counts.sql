-- Search statistics of the operator view (statistics.py), kept as a monthly rollup by the writer:
-- searches (access records of activity 1 READ or 7 EMERGENCY_OPEN) and answered ones (outcome
-- 1 ALLOWED or 2 PARTIAL) per month (UTC) × reader care giver × reader care unit. Every batch
-- adds the counts of the records it inserted in its own transaction (store.py), so the rollup is
-- exact: a redelivered event is never inserted, so never counted twice.
CREATE TABLE search_counts (
    month      date   NOT NULL,  -- first day of the month (UTC) of the event time
    care_giver text   NOT NULL,
    care_unit  text   NOT NULL,
    searches   bigint NOT NULL,
    answered   bigint NOT NULL,
    PRIMARY KEY (month, care_giver, care_unit)
);

-- The records stored before this migration. Writers must be stopped while it runs (it runs at
-- service start, before the consumers, under the migration lock of the replicas).
INSERT INTO search_counts (month, care_giver, care_unit, searches, answered)
SELECT date_trunc('month', event_time AT TIME ZONE 'UTC')::date, care_giver, care_unit,
       count(*), count(*) FILTER (WHERE outcome IN (1, 2))
FROM record
WHERE kind = 'access' AND activity IN (1, 7)
GROUP BY 1, 2, 3;

-- The covering index of the GROUP BY over the log is no longer read; dropping it saves the
-- writer one index entry per search.
DROP INDEX record_search_time;
