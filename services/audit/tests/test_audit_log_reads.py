"""Who read the log, over the real database: every answered read of the log is one committed
``log_read`` row (officer, action, request, count) before its answer; a refused request leaves
none; no row, no data (503); the rows are append-only and paged by POST /audit/log-reads/search."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from audit_fixtures import GIVER, OFFICE_TIME, OFFICER, UNIT, access_event, patient, token
from fastapi import FastAPI

from npo_audit.config import AuditSettings
from npo_audit.domain import access_entry
from npo_audit.main import create_app
from npo_deploy.testing import serve
from npo_platform.contracts.events_pb2 import AccessBasis
from npo_platform.identity import Role

pytestmark = pytest.mark.integration
Conn = "asyncpg.Connection[asyncpg.Record]"
ALICE, BOB = patient(1), patient(2)
OTHER_OFFICER = "SE2321000016-7002"


@pytest.fixture
async def app(audit_settings: AuditSettings) -> AsyncIterator[FastAPI]:
    application = create_app(audit_settings)
    async with application.router.lifespan_context(application):
        await application.state.audit.store.append("access-p0", [
            *(access_entry(access_event(ALICE, at=OFFICE_TIME + timedelta(minutes=i))) for i in range(3)),
            access_entry(access_event(BOB, basis=AccessBasis.EMERGENCY)),
        ])
        yield application


def _auth(settings: AuditSettings, role: str = Role.COMPLIANCE_OFFICER, sub: str = OFFICER) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings.keys_dir, role, sub=sub)}"}


async def _reads(raw_db: Conn) -> list[dict[str, Any]]:
    rows = await raw_db.fetch("SELECT * FROM log_read ORDER BY read_id")
    return [{**row, "filter": json.loads(row["filter"])} for row in rows]


# (method, path, form or JSON body, the action recorded, records returned, what the filter holds)
READS: list[tuple[str, str, dict[str, Any], str, int, dict[str, Any]]] = [
    ("POST", "/audit/search", {"patient_id": ALICE, "limit": 2}, "search", 2,
     {"patient_id": ALICE, "limit": 2}),
    ("POST", "/audit/export?format=csv", {"patient_id": ALICE}, "export", 3,
     {"patient_id": ALICE, "format": "csv"}),
    ("POST", "/audit/export?format=fhir", {"kind": "access"}, "export", 4,
     {"kind": "access", "format": "fhir"}),
    ("POST", "/audit/flags/search", {"rule": "emergency"}, "flags.search", 1, {"rule": "emergency"}),
    ("FORM", "/fhir/r4/AuditEvent/_search", {"patient": BOB}, "fhir.search", 1,
     {"parameters": [["patient", BOB]]}),
    ("GET", "/fhir/r4/AuditEvent?_count=3", {}, "fhir.search", 3, {"parameters": [["_count", "3"]]}),
    ("POST", "/audit/log-reads/search", {"user_hsa_id": OTHER_OFFICER}, "log_reads.search", 0,
     {"user_hsa_id": OTHER_OFFICER}),
]


async def _call(client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any],
                headers: dict[str, str]) -> httpx.Response:
    if method == "FORM":
        return await client.post(path, data=body, headers=headers)
    if method == "GET":
        return await client.get(path, headers=headers)
    return await client.post(path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body", "action", "returned", "given"), READS,
                         ids=[f"{path} {body}"[:60] for _, path, body, *_ in READS])
async def test_each_read_of_the_log_is_one_row_of_officer_action_filter_and_count(
    client: httpx.AsyncClient, audit_settings: AuditSettings, raw_db: Conn, method: str, path: str,
    body: dict[str, Any], action: str, returned: int, given: dict[str, Any],
) -> None:
    before = datetime.now(UTC)

    answer = await _call(client, method, path, body, _auth(audit_settings))

    assert answer.status_code == 200, answer.text
    [read] = await _reads(raw_db)
    assert (read["user_hsa_id"], read["care_unit"], read["care_giver"]) == (OFFICER, UNIT, GIVER)
    assert (read["action"], read["returned"], read["filter"]) == (action, returned, given)
    assert before <= read["read_at"] <= datetime.now(UTC)


async def test_a_fhir_page_link_is_recorded_with_the_search_it_continues(
    client: httpx.AsyncClient, audit_settings: AuditSettings, raw_db: Conn
) -> None:
    officer = _auth(audit_settings)
    first = await client.post("/fhir/r4/AuditEvent/_search", data={"patient": ALICE, "_count": "2"},
                              headers=officer)
    following = next(link["url"] for link in first.json()["link"] if link["relation"] == "next")

    second = await client.get(following, headers=officer)

    assert second.status_code == 200, second.text
    reads = await _reads(raw_db)
    assert [(r["action"], r["returned"]) for r in reads] == [("fhir.search", 2), ("fhir.search", 1)]
    assert reads[1]["filter"]["continues"]["p"] == [ALICE]


async def test_the_operators_statistics_are_recorded_as_a_read(
    client: httpx.AsyncClient, audit_settings: AuditSettings, raw_db: Conn
) -> None:
    answer = await client.get("/audit/statistics/searches?from=2026-03&to=2026-03",
                              headers=_auth(audit_settings, Role.OPERATOR, "SE2321000016-7003"))

    assert answer.status_code == 200, answer.text
    [read] = await _reads(raw_db)
    assert (read["user_hsa_id"], read["action"], read["returned"]) == (
        "SE2321000016-7003", "statistics.searches", 1)
    assert read["filter"] == {"from": "2026-03", "to": "2026-03", "reader": "care_giver"}


async def test_the_stream_is_recorded_when_it_opens(
    app: FastAPI, audit_settings: AuditSettings, raw_db: Conn
) -> None:
    async with (
        serve(app, lifespan="off") as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
        http.stream("POST", "/audit/stream", json={"flags_only": True},
                    headers=_auth(audit_settings)) as response,
    ):
        assert response.status_code == 200
        [read] = await _reads(raw_db)  # committed before the status line was sent

    assert (read["user_hsa_id"], read["action"], read["returned"]) == (OFFICER, "stream", None)
    assert read["filter"] == {"flags_only": True}


async def test_a_refused_read_records_nothing(
    client: httpx.AsyncClient, audit_settings: AuditSettings, raw_db: Conn
) -> None:
    clinician = _auth(audit_settings, Role.CLINICIAN)
    for method, path, body, *_ in READS:
        assert (await _call(client, method, path, body, clinician)).status_code == 403
        assert (await _call(client, method, path, body, {})).status_code == 401
    invalid = await client.post("/audit/search", json={"limit": 0}, headers=_auth(audit_settings))
    operator = await client.post("/audit/log-reads/search", json={},
                                 headers=_auth(audit_settings, Role.OPERATOR))

    assert invalid.status_code == 422
    assert operator.status_code == 403  # the compliance officer's list only
    assert await _reads(raw_db) == []


async def test_the_database_refuses_update_delete_and_truncate_of_the_reads(
    client: httpx.AsyncClient, audit_settings: AuditSettings, raw_db: Conn
) -> None:
    await client.post("/audit/search", json={"patient_id": ALICE}, headers=_auth(audit_settings))

    for sql in ("UPDATE log_read SET user_hsa_id = 'x'", "UPDATE log_read SET filter = '{}'",
                "DELETE FROM log_read", "TRUNCATE log_read"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await raw_db.execute(sql)
    [read] = await _reads(raw_db)
    assert read["filter"] == {"patient_id": ALICE}


async def test_no_row_no_data_when_the_read_cannot_be_recorded(
    app: FastAPI, client: httpx.AsyncClient, audit_settings: AuditSettings, raw_db: Conn
) -> None:
    # The database refuses the insert as it would a role without INSERT (same SQLSTATE).
    await raw_db.execute("CREATE TRIGGER log_read_refused BEFORE INSERT ON log_read"
                         " FOR EACH ROW EXECUTE FUNCTION refuse_change()")
    officer = _auth(audit_settings)

    for method, path, body, *_ in READS:
        answer = await _call(client, method, path, body, officer)
        assert answer.status_code == 503, (path, answer.text)
        assert "audit.unavailable" in answer.text
        assert ALICE not in answer.text, path
        assert BOB not in answer.text, path
        assert "event_id" not in answer.text, path
    async with serve(app, lifespan="off") as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        stream = await http.post("/audit/stream", json={}, headers=officer)
    assert (stream.status_code, stream.json()["code"]) == (503, "audit.unavailable")
    assert await _reads(raw_db) == []


async def test_the_reads_are_paged_newest_first_and_filtered_by_officer_and_time(
    client: httpx.AsyncClient, audit_settings: AuditSettings, raw_db: Conn
) -> None:
    for n in range(5):
        for sub in (OFFICER, OTHER_OFFICER):
            await client.post("/audit/search", json={"limit": n + 1}, headers=_auth(audit_settings, sub=sub))
    middle = await raw_db.fetchval("SELECT read_at FROM log_read WHERE read_id = (SELECT min(read_id) + 4"
                                   " FROM log_read)")
    reader = _auth(audit_settings, sub="SE2321000016-7004")

    async def pages(query: dict[str, Any]) -> list[list[dict[str, Any]]]:
        found, cursor = [], None
        while True:
            answer = await client.post("/audit/log-reads/search", headers=reader,
                                       json={**query, "limit": 2, "cursor": cursor})
            assert answer.status_code == 200, answer.text
            found.append(answer.json()["items"])
            if (cursor := answer.json()["next_cursor"]) is None:
                return found

    others = await pages({"user_hsa_id": OTHER_OFFICER})
    since = await pages({"time_from": middle.isoformat()})

    items = [item for page in others for item in page]
    assert [len(page) for page in others] == [2, 2, 1]
    assert [item["filter"] for item in items] == [{"limit": n} for n in (5, 4, 3, 2, 1)]
    assert [(i["user_hsa_id"], i["action"], i["returned"]) for i in items] == [
        (OTHER_OFFICER, "search", min(n, 4)) for n in (5, 4, 3, 2, 1)]  # four records are logged
    ids = [item["read_id"] for item in items]
    assert ids == sorted(ids, reverse=True)
    since_ids = [item["read_id"] for page in since for item in page]
    assert since_ids == sorted(since_ids, reverse=True)
    # the last six searches and the three pages of the first list (each page read before it is
    # recorded, so a page never shows the rows of the pages before it)
    assert len(since_ids) == 6 + 3
    bad = await client.post("/audit/log-reads/search", json={"cursor": "x1"}, headers=reader)
    assert (bad.status_code, bad.json()["code"]) == (422, "cursor.invalid")
