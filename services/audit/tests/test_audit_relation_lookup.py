"""The no-relation rule's lookup stays one index probe per (patient, care unit) pair, whatever
plan the server picks: never a sort of the whole relation table for each batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from npo_audit.store_pg import RELATIONS_OF_PAIRS, PostgresAuditStore

pytestmark = pytest.mark.integration

_RELATIONS = """
INSERT INTO relation (record_id, patient_id, care_unit, care_giver)
SELECT 'rel-' || n, lpad(n::text, 12, '0'), 'SE2321000016-E' || lpad((n % 50)::text, 4, '0'),
       'SE2321000016-G001'
FROM generate_series(1, 20000) AS n
"""


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
async def test_the_relation_lookup_probes_the_index_per_pair_in_every_plan(
    pg_store: PostgresAuditStore, raw_db: asyncpg.Connection[asyncpg.Record], plan_mode: str
) -> None:
    await raw_db.execute(_RELATIONS)
    await raw_db.execute("ANALYZE relation")
    await raw_db.execute(f"SET plan_cache_mode = {plan_mode}")
    pairs = [(f"{n:012d}", f"SE2321000016-E{n % 50:04d}") for n in range(1, 2001, 2)]

    plan = await raw_db.fetchval(
        f"EXPLAIN (FORMAT JSON) {RELATIONS_OF_PAIRS}", [p for p, _ in pairs], [u for _, u in pairs]
    )

    nodes = list(_nodes(json.loads(plan)[0]["Plan"]))
    scans = [n["Node Type"] for n in nodes if n.get("Relation Name") == "relation"]
    assert scans in (["Index Scan"], ["Bitmap Heap Scan"]), scans
    assert not {"Sort", "Merge Join", "Hash Join", "Hash"} & {n["Node Type"] for n in nodes}
    found = await raw_db.fetch(RELATIONS_OF_PAIRS, [p for p, _ in pairs], [u for _, u in pairs])
    assert sorted((r["patient_id"], r["care_unit"]) for r in found) == sorted(pairs)
