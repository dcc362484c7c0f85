"""The HTTP API over the real database: roles, search, export, follow-up, extract, stream."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
import uvicorn
from audit_fixtures import OFFICE_TIME, access_event, patient, relation_history, token
from fastapi import FastAPI

from npo_audit.config import AuditSettings
from npo_audit.domain import access_entry
from npo_audit.main import create_app
from npo_deploy.fhir_checks import balp_problems, bundle_problems
from npo_deploy.fhir_validator import FhirValidator
from npo_deploy.processes import free_port
from npo_platform.contracts.events_pb2 import AccessBasis, AccessOutcome
from npo_platform.identity import Role

pytestmark = pytest.mark.integration
ALICE, BOB = patient(1), patient(2)


@pytest.fixture
async def app(audit_settings: AuditSettings) -> AsyncIterator[FastAPI]:
    application = create_app(audit_settings)
    async with application.router.lifespan_context(application):
        store = application.state.audit.store
        await store.append(
            "access-p0",
            [access_entry(access_event(ALICE, at=OFFICE_TIME + timedelta(minutes=i))) for i in range(5)]
            + [
                access_entry(access_event(BOB, at=OFFICE_TIME, basis=AccessBasis.EMERGENCY)),
                access_entry(
                    access_event(BOB, at=OFFICE_TIME + timedelta(hours=1), outcome=AccessOutcome.DENIED)
                ),
            ],
        )
        await store.append("consent-p0", relation_history(BOB))
        yield application


def _auth(settings: AuditSettings, role: str, patient_id: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings.keys_dir, role, patient_id=patient_id)}"}


async def test_a_clinician_cannot_search_the_log(
    client: httpx.AsyncClient, audit_settings: AuditSettings
) -> None:
    for path in ("/audit/search", "/audit/flags/search", "/audit/export"):
        response = await client.post(path, json={}, headers=_auth(audit_settings, Role.CLINICIAN))
        assert response.status_code == 403
        assert response.json()["code"] == "role.missing"
    assert (await client.post("/audit/search", json={})).status_code == 401


async def test_compliance_search_by_patient_in_the_body(
    client: httpx.AsyncClient, audit_settings: AuditSettings
) -> None:
    officer = _auth(audit_settings, Role.COMPLIANCE_OFFICER)

    page1 = (
        await client.post("/audit/search", json={"patient_id": ALICE, "limit": 3}, headers=officer)
    ).json()
    page2 = (
        await client.post(
            "/audit/search",
            json={"patient_id": ALICE, "limit": 3, "cursor": page1["next_cursor"]},
            headers=officer,
        )
    ).json()

    times = [item["event_time"] for item in page1["items"] + page2["items"]]
    assert len(times) == 5
    assert times == sorted(times, reverse=True)
    assert {item["patient_id"] for item in page1["items"]} == {ALICE}
    assert page2["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"basis": "emergency"}, 1),
        ({"outcome": "denied"}, 1),
        ({"rule": "emergency"}, 1),
        ({"user_hsa_id": "SE2321000016-9001"}, 7),
        ({"care_unit": "SE2321000016-1001"}, 7),
        ({"care_giver": "SE2321000016-0001", "time_from": "2026-03-10T09:30:00Z"}, 1),
        ({"time_to": "2026-03-10T09:01:00Z"}, 2),
    ],
)
async def test_compliance_search_filters(
    client: httpx.AsyncClient, audit_settings: AuditSettings, query: dict[str, str], expected: int
) -> None:
    response = await client.post(
        "/audit/search", json=query, headers=_auth(audit_settings, Role.COMPLIANCE_OFFICER)
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == expected


async def test_exports_as_csv_json_and_fhir_audit_events(
    client: httpx.AsyncClient, audit_settings: AuditSettings
) -> None:
    officer = _auth(audit_settings, Role.COMPLIANCE_OFFICER)
    body = {"patient_id": BOB}

    csv_text = (await client.post("/audit/export?format=csv", json=body, headers=officer)).text
    lines = (await client.post("/audit/export?format=json", json=body, headers=officer)).text.splitlines()
    bundle = (await client.post("/audit/export?format=fhir", json=body, headers=officer)).json()

    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert [row["basis"] for row in rows] == ["no_basis" if False else "consent", "emergency"]
    assert rows[1]["flags"] == "emergency"
    assert [json.loads(line)["outcome"] for line in lines] == ["denied", "allowed"]
    events = [entry["resource"] for entry in bundle["entry"]]
    assert [e["resourceType"] for e in events] == ["AuditEvent", "AuditEvent"]
    assert [e["outcome"] for e in events] == ["8", "0"]
    assert events[1]["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    assert events[1]["entity"][0]["what"]["identifier"]["value"] == BOB
    assert events[1]["agent"][0]["who"]["identifier"]["value"] == "SE2321000016-9001"


async def test_the_fhir_export_is_valid_r4_in_balp_shape_for_access_and_consent_records(
    client: httpx.AsyncClient, audit_settings: AuditSettings, fhir_validator: FhirValidator
) -> None:
    officer = _auth(audit_settings, Role.COMPLIANCE_OFFICER)

    for kind, expected in (("access", 7), ("consent", 3)):
        answer = await client.post("/audit/export?format=fhir", json={"kind": kind}, headers=officer)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/fhir+json")
        bundle = answer.json()
        assert len(bundle["entry"]) == expected
        assert [str(e) for e in fhir_validator.errors(bundle)] == []
        assert bundle_problems(bundle) == []
        for found in bundle["entry"]:
            assert balp_problems(found["resource"]) == [], found["resource"]
        outcomes = sorted(e["resource"]["outcome"] for e in bundle["entry"])
        assert outcomes == (["0"] * 5 + ["0", "8"] if kind == "access" else ["0", "0", "8"])


async def test_an_empty_fhir_export_or_extract_is_a_valid_bundle(
    client: httpx.AsyncClient, audit_settings: AuditSettings, fhir_validator: FhirValidator
) -> None:
    nobody = patient(3)
    officer = _auth(audit_settings, Role.COMPLIANCE_OFFICER)
    export = await client.post("/audit/export?format=fhir", json={"patient_id": nobody}, headers=officer)
    extract = await client.post("/audit/extract?format=fhir", json={},
                                headers=_auth(audit_settings, Role.PATIENT, nobody))

    for answer in (export, extract):
        assert answer.status_code == 200, answer.text
        assert "entry" not in answer.json()  # FHIR's JSON has no empty arrays
        assert [str(e) for e in fhir_validator.errors(answer.json())] == []


async def test_an_export_that_cannot_be_whole_is_a_problem_before_any_byte(
    client: httpx.AsyncClient, audit_settings: AuditSettings
) -> None:
    officer = _auth(audit_settings, Role.COMPLIANCE_OFFICER)

    bad_cursor = await client.post("/audit/export?format=fhir", json={"cursor": "not-ours"}, headers=officer)
    reviews = await client.post("/audit/export?format=fhir", json={"kind": "review"}, headers=officer)

    assert (bad_cursor.status_code, bad_cursor.json()["code"]) == (422, "cursor.invalid")
    assert (reviews.status_code, reviews.json()["code"]) == (422, "export.no_fhir_form")


async def test_an_export_past_the_cap_is_refused_never_cut_off(
    app: FastAPI, audit_settings: AuditSettings
) -> None:
    officer = _auth(audit_settings, Role.COMPLIANCE_OFFICER)
    answers: dict[tuple[int, str], httpx.Response] = {}
    for cap in (6, 7):  # seven access records are logged (five of Alice's, two of Bob's)
        capped = create_app(audit_settings.model_copy(update={"max_export": cap}))
        async with capped.router.lifespan_context(capped), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=capped), base_url="http://npo-audit.test"
        ) as http:
            for format in ("csv", "json", "fhir"):
                answers[cap, format] = await http.post(f"/audit/export?format={format}",
                                                       json={"kind": "access"}, headers=officer)

    for format in ("csv", "json", "fhir"):
        refused, whole = answers[6, format], answers[7, format]
        assert (refused.status_code, refused.json()["code"]) == (422, "export.too_large")
        assert refused.headers["content-type"] == "application/problem+json"
        assert whole.status_code == 200, whole.text
    assert len(answers[7, "json"].text.splitlines()) == 7
    assert len(answers[7, "fhir"].json()["entry"]) == 7


async def test_a_patient_reads_only_their_own_extract(
    client: httpx.AsyncClient, audit_settings: AuditSettings
) -> None:
    alice = _auth(audit_settings, Role.PATIENT, ALICE)

    own = await client.post("/audit/extract", json={"limit": 10}, headers=alice)
    other = await client.post("/audit/extract", json={"patient_id": BOB}, headers=alice)
    too_many = await client.post("/audit/extract", json={"limit": 10_001}, headers=alice)
    officer = await client.post(
        "/audit/extract", json={}, headers=_auth(audit_settings, Role.COMPLIANCE_OFFICER)
    )

    assert own.status_code == 200
    items = own.json()["items"]
    assert len(items) == 5
    assert set(items[0]) == {
        "care_giver",
        "care_unit",
        "access_time",
        "purpose",
        "activity",
        "resource_types",
        "resource_names",
        "emergency",
        "outcome",
    }
    assert {i["outcome"] for i in items} <= {"allowed", "partial", "denied", "not_delivered"}
    assert items[0]["resource_names"][0] == {"key": "dia", "sv": "Diagnoser", "en": "Diagnoses"}
    assert BOB not in own.text
    assert ALICE not in own.text
    assert other.status_code == 422  # there is no way to name another patient
    assert too_many.status_code == 422
    assert officer.status_code == 403


async def test_marking_a_flag_reviewed_is_itself_audited(
    client: httpx.AsyncClient, audit_settings: AuditSettings
) -> None:
    officer = _auth(audit_settings, Role.COMPLIANCE_OFFICER)
    queue = {"rule": "emergency", "reviewed": False}
    flags = (await client.post("/audit/flags/search", json=queue, headers=officer)).json()
    flag = flags["items"][0]
    assert flag["reviewed"] is False
    opened = await client.post("/audit/search", json={"event_id": flag["event_id"]}, headers=officer)

    review = await client.post(
        "/audit/reviews", json={"flag_id": flag["flag_id"], "note": "checked: ER", "conclusion": "justified"},
        headers=officer,
    )

    assert [item["event_id"] for item in opened.json()["items"]] == [flag["event_id"]]
    assert review.status_code == 201, review.text
    assert review.json()["kind"] == "review"
    assert review.json()["review"]["note"] == "checked: ER"
    assert review.json()["review"]["conclusion"] == "justified"
    after = (await client.post("/audit/flags/search", json={"rule": "emergency"}, headers=officer)).json()
    assert after["items"][0]["reviewed"] is True
    left = (await client.post("/audit/flags/search", json=queue, headers=officer)).json()
    assert flag["flag_id"] not in [item["flag_id"] for item in left["items"]]
    reviews = (await client.post("/audit/search", json={"kind": "review"}, headers=officer)).json()
    assert [r["subject"] for r in reviews["items"]] == [f"flag:{flag['flag_id']}"]
    verified = (await client.post("/audit/verify", headers=officer)).json()
    assert verified["ok"] is True
    assert verified["verified"]["review"] == 1
    assert {c["chain"]: (c["records"], c["ok"]) for c in verified["chains"]}["review"] == (1, True)
    assert verified["checked_at"]


async def test_a_review_conclusion_must_be_a_known_one(
    client: httpx.AsyncClient, audit_settings: AuditSettings
) -> None:
    officer = _auth(audit_settings, Role.COMPLIANCE_OFFICER)
    flag = (await client.post("/audit/flags/search", json={}, headers=officer)).json()["items"][0]

    body = {"flag_id": flag["flag_id"], "note": "x", "conclusion": "fine"}
    answer = await client.post("/audit/reviews", json=body, headers=officer)

    assert answer.status_code == 422


async def test_no_route_updates_or_deletes_records(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    methods = {(path, method) for path, operations in paths.items() for method in operations}
    assert not {m for _, m in methods} & {"delete", "patch"}
    # The only PUT loads reference data for the kinship rule, not the log.
    assert [path for path, method in methods if method == "put"] == ["/audit/register"]


async def test_the_live_stream_delivers_new_records_and_flags(
    app: FastAPI, audit_settings: AuditSettings
) -> None:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
            await asyncio.sleep(0.05)
        got = await _first_stream_events(app, port, audit_settings)
    finally:
        server.should_exit = True
        await serving
    assert [name for name, _ in got] == ["ready", "flag"]
    assert got[1][1]["flags"] == ["emergency"]


async def _first_stream_events(
    app: FastAPI, port: int, settings: AuditSettings
) -> list[tuple[str, dict[str, object]]]:
    officer = _auth(settings, Role.COMPLIANCE_OFFICER)
    events: list[tuple[str, dict[str, object]]] = []
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
        http.stream(
            "POST", "/audit/stream", json={"flags_only": True, "rule": "emergency"}, headers=officer
        ) as response,
    ):
        name = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
                if name == "ready":
                    store = app.state.audit.store
                    await store.append("access-p1", [access_entry(access_event(patient(3)))])
                    await store.append(
                        "access-p1", [access_entry(access_event(patient(3), basis=AccessBasis.EMERGENCY))]
                    )
                else:
                    break
    return events
