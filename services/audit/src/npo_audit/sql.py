"""SQL of the writer: the search rollup, the periodic sample-check sweeps (many patients per
hour, repeated refused attempts)."""

from __future__ import annotations

# Chains with records the sweep has not read yet, and how far it read them.
SWEEP_HEADS = """
SELECT h.chain, coalesce(p.seq, 0) AS done, h.seq AS head FROM chain_head h
LEFT JOIN sweep_position p ON p.chain = h.chain
WHERE h.chain LIKE $1 AND h.seq > coalesce(p.seq, 0)
"""
SWEEP_PAIRS = """
SELECT DISTINCT r.user_hsa_id AS u, date_trunc('hour', r.event_time, 'UTC') AS h
FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS k(chain, done, head)
JOIN record r ON r.chain = k.chain AND r.seq > k.done AND r.seq <= k.head
"""
# The same for refused commands (consent records with change REFUSED, 4): the users and hours.
SWEEP_REFUSED_PAIRS = SWEEP_PAIRS.rstrip() + " AND r.kind = 'consent' AND r.outcome = 4\n"
# Per (user, hour): the refused attempts ranked; the limit-th is flagged, once per user and hour.
SWEEP_REFUSALS = """
WITH refused AS (
    SELECT k.u, k.h, r.event_id, r.event_time, r.patient_id, r.care_unit,
        row_number() OVER w AS rank, count(*) OVER (PARTITION BY k.u, k.h) AS attempts
    FROM unnest($1::text[], $2::timestamptz[]) AS k(u, h)
    JOIN record r ON r.user_hsa_id = k.u AND r.event_time >= k.h
        AND r.event_time < k.h + interval '1 hour' AND r.kind = 'consent' AND r.outcome = 4
    WINDOW w AS (PARTITION BY k.u, k.h ORDER BY r.event_time, r.event_id)
)
INSERT INTO flag (rule, event_id, event_time, patient_id, user_hsa_id, care_unit, detail)
SELECT 'repeated_refused_attempts', event_id, event_time, patient_id, u, care_unit,
    attempts || ' refused attempts within the hour (limit ' || $3::int || ')'
FROM refused WHERE rank = $3::int AND NOT EXISTS (
    SELECT 1 FROM flag f WHERE f.rule = 'repeated_refused_attempts' AND f.user_hsa_id = refused.u
        AND f.event_time >= refused.h AND f.event_time < refused.h + interval '1 hour')
ON CONFLICT (rule, event_id) DO NOTHING
RETURNING rule, event_id, detail
"""
# Per (reader, hour): each patient's first access, ranked; the (limit+1)-th is the crossing one.
SWEEP_FLAGS = """
WITH firsts AS (
    SELECT DISTINCT ON (k.u, k.h, r.patient_id)
        k.u, k.h, r.patient_id, r.event_time, r.event_id, r.care_unit
    FROM unnest($1::text[], $2::timestamptz[]) AS k(u, h)
    JOIN record r ON r.user_hsa_id = k.u AND r.event_time >= k.h
        AND r.event_time < k.h + interval '1 hour' AND r.kind = 'access'
    ORDER BY k.u, k.h, r.patient_id, r.event_time, r.event_id
), ranked AS (
    SELECT *, row_number() OVER w AS rank, count(*) OVER (PARTITION BY u, h) AS patients
    FROM firsts WINDOW w AS (PARTITION BY u, h ORDER BY event_time, event_id)
)
INSERT INTO flag (rule, event_id, event_time, patient_id, user_hsa_id, care_unit, detail)
SELECT 'many_patients_per_hour', event_id, event_time, patient_id, u, care_unit,
    patients || ' distinct patients within the hour (limit ' || $3::int || ')'
FROM ranked WHERE rank = $3::int + 1 AND NOT EXISTS (
    SELECT 1 FROM flag f WHERE f.rule = 'many_patients_per_hour' AND f.user_hsa_id = ranked.u
        AND f.event_time >= ranked.h AND f.event_time < ranked.h + interval '1 hour')
ON CONFLICT (rule, event_id) DO NOTHING
RETURNING rule, event_id, detail
"""

# A batch's searches per (month, care giver, care unit) added to the rollup. Several chains'
# writers add to the same rows: sorted by key, every transaction locks them in the same order,
# so they may wait for each other's commit but never deadlock.
ADD_SEARCH_COUNTS = """
INSERT INTO search_counts AS s (month, care_giver, care_unit, searches, answered)
SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
    AS k(month, care_giver, care_unit, searches, answered)
ORDER BY month, care_giver, care_unit
ON CONFLICT (month, care_giver, care_unit) DO UPDATE
    SET searches = s.searches + excluded.searches, answered = s.answered + excluded.answered
"""
