-- Search statistics of the operator view (statistics.py): reads per month and reader
-- organisation. A covering partial index: the count is an index-only scan over the range's
-- partitions (activity 1 READ, 7 EMERGENCY_OPEN), no table rows are read.
CREATE INDEX record_search_time ON record (event_time) INCLUDE (care_giver, care_unit, outcome)
    WHERE kind = 'access' AND activity IN (1, 7);
