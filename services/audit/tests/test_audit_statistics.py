"""Search statistics for the operator view, over the real database: the writer's monthly rollup
equals a count over the log (ingest, redelivery, replay, concurrent chains, backfill), range, roles."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import asyncpg
import httpx
import pytest
from audit_fixtures import OFFICE_TIME, access_event, patient, relation_event, token
from fastapi import FastAPI

from npo_audit.api_statistics import MAX_MONTHS, month_range
from npo_audit.config import AuditSettings
from npo_audit.domain import Entry, SearchKey, access_entry, consent_entry
from npo_audit.main import create_app
from npo_audit.store_pg import PostgresAuditStore
from npo_audit.store_pg_search import SEARCHES
from npo_platform.contracts.events_pb2 import AccessOutcome, ActivityType
from npo_platform.identity import Role
from npo_platform.problems import Problem

pytestmark = pytest.mark.integration
REGION, TOWN = "SE2321000503-VG", "SE2120005830-VG"
MARCH, APRIL = OFFICE_TIME, OFFICE_TIME + timedelta(days=31)  # 2026-03-10, 2026-04-10


def _read(n: int, at: datetime, giver: str, unit: str = "SE2321000503-VE001", *,
          outcome: int = AccessOutcome.ALLOWED, activity: int = ActivityType.READ) -> Entry:
    event = access_event(patient(n), at=at + timedelta(minutes=n), unit=unit, outcome=outcome)
    event.actor.care_giver_hsa_id, event.activity = giver, activity
    return access_entry(event)


@pytest.fixture
async def app(audit_settings: AuditSettings) -> AsyncIterator[FastAPI]:
    application = create_app(audit_settings)
    async with application.router.lifespan_context(application):
        entries = [
            *(_read(i, MARCH, REGION) for i in range(3)),
            _read(3, MARCH, REGION, outcome=AccessOutcome.DENIED),
            _read(4, MARCH, TOWN, unit="SE2120005830-VE002", activity=ActivityType.EMERGENCY_OPEN),
            *(_read(10 + i, APRIL, REGION) for i in range(2)),
            _read(20, APRIL, TOWN, unit="SE2120005830-VE002", activity=ActivityType.PRINT),  # no search
        ]
        await application.state.audit.store.append("access-p0", entries)
        await application.state.audit.store.append("consent-p0", [consent_entry(relation_event(patient(1)))])
        yield application


def _auth(settings: AuditSettings, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings.keys_dir, role)}"}


async def test_searches_per_month_and_care_giver(
    client: httpx.AsyncClient, audit_settings: AuditSettings
) -> None:
    answer = await client.get("/audit/statistics/searches", params={"from": "2026-02", "to": "2026-05"},
                              headers=_auth(audit_settings, Role.OPERATOR))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["from_month"], body["to_month"], body["reader"]) == ("2026-02", "2026-05", "care_giver")
    assert body["months"] == [
        {"month": "2026-02", "searches": 0, "answered": 0},
        {"month": "2026-03", "searches": 5, "answered": 4},
        {"month": "2026-04", "searches": 2, "answered": 2},
        {"month": "2026-05", "searches": 0, "answered": 0},
    ]
    assert body["readers"] == [{"reader": REGION, "searches": 6, "answered": 5},
                               {"reader": TOWN, "searches": 1, "answered": 1}]
    assert {(r["month"], r["reader"], r["searches"]) for r in body["by_month"]} == {
        ("2026-03", REGION, 4), ("2026-03", TOWN, 1), ("2026-04", REGION, 2)}
    assert "19" not in json.dumps(body)  # no personnummer (they start with the century)


async def test_by_care_unit_and_a_range_that_excludes_a_month(
    client: httpx.AsyncClient, audit_settings: AuditSettings
) -> None:
    answer = await client.get("/audit/statistics/searches",
                              params={"from": "2026-04", "to": "2026-04", "reader": "care_unit"},
                              headers=_auth(audit_settings, Role.ADMIN))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["months"] == [{"month": "2026-04", "searches": 2, "answered": 2}]
    assert body["readers"] == [{"reader": "SE2321000503-VE001", "searches": 2, "answered": 2}]


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.COMPLIANCE_OFFICER, Role.PATIENT])
async def test_only_operators_and_admins(
    client: httpx.AsyncClient, audit_settings: AuditSettings, role: Role
) -> None:
    headers = {"Authorization": f"Bearer {token(audit_settings.keys_dir, role, patient_id=patient(1))}"}
    answer = await client.get("/audit/statistics/searches", headers=headers)
    assert answer.status_code == 403
    assert answer.json()["code"] == "role.missing"
    assert (await client.get("/audit/statistics/searches")).status_code == 401


@pytest.mark.parametrize(("params", "code"), [
    ({"from": "2026-13"}, "statistics.month"),
    ({"from": "2026-05", "to": "2026-04"}, "statistics.range"),
    ({"from": "2020-01", "to": "2026-01"}, "statistics.range"),
])
async def test_bad_and_unbounded_ranges_are_refused(
    client: httpx.AsyncClient, audit_settings: AuditSettings, params: dict[str, str], code: str
) -> None:
    answer = await client.get("/audit/statistics/searches", params=params,
                              headers=_auth(audit_settings, Role.OPERATOR))
    assert answer.status_code == 422
    assert answer.json()["code"] == code


def test_the_default_range_is_the_last_twelve_months() -> None:
    span = month_range(None, None, datetime(2026, 2, 14, 9, tzinfo=UTC))
    assert span.months[0] == "2025-03"
    assert span.months[-1] == "2026-02"
    assert span.end == datetime(2026, 3, 1, tzinfo=UTC)
    assert len(month_range("2021-01", "2025-12", span.end).months) == MAX_MONTHS
    with pytest.raises(Problem):
        month_range("2021-01", "2026-01", span.end)


async def test_the_endpoint_reads_only_the_rollup(
    app: FastAPI, raw_db: asyncpg.Connection[asyncpg.Record]
) -> None:
    plan = await raw_db.fetchval("EXPLAIN (FORMAT JSON) " + SEARCHES.format(reader="care_giver"),
                                 datetime(2026, 3, 1).date(), datetime(2026, 5, 1).date())
    assert {node["Relation Name"] for node in _scans(json.loads(plan)[0]["Plan"])} == {"search_counts"}


# The definition of a search, counted over the log itself: what the rollup must always equal.
_OVER_THE_LOG = """
SELECT date_trunc('month', event_time AT TIME ZONE 'UTC')::date AS month, care_giver, care_unit,
       count(*) AS searches, count(*) FILTER (WHERE outcome IN (1, 2)) AS answered
FROM record WHERE kind = 'access' AND activity IN (1, 7) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""


async def _counted_over_the_log(conn: asyncpg.Connection[asyncpg.Record]) -> dict[SearchKey, tuple[int, int]]:
    rows = await conn.fetch(_OVER_THE_LOG)
    return {SearchKey(r["month"], r["care_giver"], r["care_unit"]): (r["searches"], r["answered"])
            for r in rows}


def _mixed(first: int, count: int) -> list[Entry]:
    """Reads, emergency opens and prints over three months, two givers, three units, all outcomes."""
    entries = []
    for n in range(first, first + count):
        giver, unit = [(REGION, "SE2321000503-VE001"), (REGION, "SE2321000503-VE003"),
                       (TOWN, "SE2120005830-VE002")][n % 3]
        activity = [ActivityType.READ, ActivityType.EMERGENCY_OPEN, ActivityType.PRINT][n % 5 % 3]
        outcome = [AccessOutcome.ALLOWED, AccessOutcome.PARTIAL, AccessOutcome.DENIED][n % 7 % 3]
        at = MARCH + timedelta(days=31 * (n % 3), hours=n % 24)  # March, April, May
        entries.append(_read(n % 50, at, giver, unit, outcome=outcome, activity=activity))
    return entries


async def test_the_rollup_equals_a_count_over_the_log_after_redelivery_and_replay(
    pg_store: PostgresAuditStore, raw_db: asyncpg.Connection[asyncpg.Record]
) -> None:
    batches = [_mixed(i * 100, 100) for i in range(4)]
    for batch in batches:
        await pg_store.append("access-p0", batch)
    counted = await pg_store.search_counts()
    assert counted == await _counted_over_the_log(raw_db)
    assert {k.month.month for k in counted} == {3, 4, 5}
    assert sum(n for n, _ in counted.values()) == 400 - 400 // 5  # every fifth is a print

    await pg_store.append("access-p0", batches[1])  # a redelivered batch: nothing stored
    late = _mixed(400, 30)
    await pg_store.append("access-p0", batches[3][50:] + late)  # half old, half new
    await pg_store.append("access-p1", batches[0] + batches[2])  # the same events on another chain
    everything = [entry for batch in [*batches, late] for entry in batch]
    for first in range(0, 430, 70):  # a replay of everything, in other batch boundaries
        await pg_store.append("access-p0", everything[first:first + 70])

    assert await pg_store.search_counts() == await _counted_over_the_log(raw_db)
    assert sum(n for n, _ in (await pg_store.search_counts()).values()) == 430 - 430 // 5


async def test_chains_adding_to_the_same_rows_at_once_count_exactly(
    pg_store: PostgresAuditStore, raw_db: asyncpg.Connection[asyncpg.Record]
) -> None:
    # Every chain's batches touch the same (month, giver, unit) rows: they wait, never deadlock.
    await asyncio.wait_for(asyncio.gather(*(
        pg_store.append(f"access-p{chain}", _mixed(1000 * chain + 100 * i, 100))
        for chain in range(4) for i in range(3)
    )), timeout=60)

    counted = await pg_store.search_counts()
    assert counted == await _counted_over_the_log(raw_db)
    assert sum(n for n, _ in counted.values()) == 1200 - 1200 // 5


async def test_the_migration_counts_the_records_stored_before_it(database_url: str) -> None:
    schema = f"audit_backfill_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(database_url)
    files = resources.files("npo_audit.migrations")
    try:
        await conn.execute(f"CREATE SCHEMA {schema}; SET search_path = {schema}")
        for name in ("0001_audit_log.sql", "0002_search_statistics.sql"):
            await conn.execute(files.joinpath(name).read_text())
        for moment in (MARCH, APRIL):
            await conn.execute("SELECT ensure_month_partition($1)", moment)
        await conn.execute(_BEFORE_THE_ROLLUP, MARCH)
        expected = await _counted_over_the_log(conn)

        await conn.execute(files.joinpath("0003_search_counts.sql").read_text())

        rows = await conn.fetch("SELECT * FROM search_counts ORDER BY month, care_giver, care_unit")
        assert {SearchKey(r["month"], r["care_giver"], r["care_unit"]): (r["searches"], r["answered"])
                for r in rows} == expected
        assert sum(n for n, _ in expected.values()) == 2000 - 2000 // 4
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


# 2000 access records over two months: activity READ, EMERGENCY_OPEN or PRINT, outcomes 1-3.
_BEFORE_THE_ROLLUP = """
INSERT INTO record (chain, seq, kind, event_id, event_time, recorded_at, patient_id, user_hsa_id,
    care_unit, care_giver, activity, basis, outcome, purpose, categories, payload, subject,
    prev_hash, hash)
SELECT 'access-p0', n, 'access', 'e-' || n, $1::timestamptz + (n % 2) * interval '31 days',
    now(), '191212121212', 'SE2321000503-U1', 'SE2321000503-VE00' || n % 3, 'SE2321000503-VG',
    CASE n % 4 WHEN 0 THEN 4 WHEN 1 THEN 7 ELSE 1 END, 3, 1 + n % 3, 'care', '{}', '', '', '', ''
FROM generate_series(1, 2000) AS n
"""


def _scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node] if "Relation Name" in node else []
    for child in node.get("Plans", []):
        found += _scans(child)
    return found
