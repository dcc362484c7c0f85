"""The HTTP API over the real database: authentication, commands, problem codes and decisions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from consent_support import ANNA, BO, CG_A, CG_B, ERIK, UA1, UB1, bearer, new_patient
from fastapi import FastAPI

from npo_consent.config import ConsentSettings
from npo_consent.main import create_app
from npo_consent.service import ConsentService
from npo_platform.contracts import ConsentEvent
from npo_platform.identity import Role, ensure_local_keypair

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    private, public = ensure_local_keypair(tmp_path_factory.mktemp("keys"))
    return private.read_bytes(), public


@pytest.fixture(scope="module")
async def app(database_url: str, keys: tuple[bytes, Path]) -> AsyncIterator[FastAPI]:
    # One clinician's requests back to back in process, the module through: no per-user rate
    # (the request guard's rates are tried in libs/platform/tests/test_guard.py, test_security).
    settings = ConsentSettings(database_url=database_url, db_schema="consent_api", background=False,
                               jwt_public_key_path=keys[1], rate_limit_user="")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://npo-consent.test") as client:
        yield client


@pytest.fixture
def anna(keys: tuple[bytes, Path]) -> dict[str, str]:
    return bearer(keys[0], ANNA)


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def decision_body(patient: str) -> dict[str, object]:
    return {"patient_id": patient, "categories": ["diagnoses"], "engagements": [
        {"id": "b1", "data_controller": CG_B, "care_unit": UB1, "logical_address": UB1}]}


async def pending_events(app: FastAPI) -> list[ConsentEvent]:
    service: ConsentService = app.state.consent_service
    events: list[ConsentEvent] = []

    async def collect(batch: Sequence[ConsentEvent]) -> None:
        events.extend(batch)

    while await service.store.relay(collect):
        pass
    return events


async def test_every_route_but_health_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/decisions", json=decision_body(new_patient()))
    assert response.status_code == 401
    assert response.json()["code"] == "token.missing"


async def test_decisions_need_the_clinician_role(client: httpx.AsyncClient, keys: tuple[bytes, Path]) -> None:
    headers = bearer(keys[0], ANNA, Role.OPERATOR)
    response = await client.post("/v1/decisions", json=decision_body(new_patient()), headers=headers)
    assert response.status_code == 403
    assert response.json()["code"] == "role.missing"


async def test_consent_over_http_allows_and_revocation_denies_at_once(
    client: httpx.AsyncClient, anna: dict[str, str], app: FastAPI
) -> None:
    patient = new_patient()
    await pending_events(app)
    relation = await client.post("/v1/relations", json={"patient_id": patient}, headers=anna)
    consent = await client.post("/v1/consents", headers=anna,
                                json={"patient_id": patient, "care_unit": UA1, "valid_to": later(days=7)})
    assert relation.status_code == consent.status_code == 201

    allowed = (await client.post("/v1/decisions", json=decision_body(patient), headers=anna)).json()
    assert (allowed["outcome"], allowed["basis"]) == ("allowed", "consent")

    record_id = consent.json()["record_id"]
    assert (await client.post(f"/v1/consents/{record_id}/revoke", headers=anna)).status_code == 200
    denied = (await client.post("/v1/decisions", json=decision_body(patient), headers=anna)).json()
    assert (denied["outcome"], denied["reason_code"]) == ("denied", "no_consent")
    withheld = {"id": "b1", "allowed": False, "basis": "none", "reason_code": "no_consent"}
    assert denied["engagements"] == [withheld]

    events = [e for e in await pending_events(app) if e.patient_id == patient]
    assert [(e.subject, e.change) for e in events] == [
        (ConsentEvent.PATIENT_RELATION, ConsentEvent.REGISTERED),
        (ConsentEvent.CONSENT, ConsentEvent.REGISTERED),
        (ConsentEvent.CONSENT, ConsentEvent.REVOKED),
    ]
    assert (events[1].actor.user_hsa_id, events[1].care_unit_hsa_id) == (ANNA.user, UA1)


async def test_blocked_information_is_flagged_without_saying_where(
    client: httpx.AsyncClient, anna: dict[str, str], keys: tuple[bytes, Path]
) -> None:
    patient = new_patient()
    erik = bearer(keys[0], ERIK)  # B holds the information: B places the block
    for path, body, who in [("/v1/relations", {}, anna),
                            ("/v1/consents", {"care_unit": UA1, "valid_to": later(days=1)}, anna),
                            ("/v1/blocks", {"care_giver": CG_B}, erik)]:
        response = await client.post(path, json={"patient_id": patient, **body}, headers=who)
        assert response.status_code == 201, response.text

    decision = (await client.post("/v1/decisions", json=decision_body(patient), headers=anna)).json()

    assert decision["blocked_information_exists"] is True
    assert decision["reason_code"] == "blocked"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/emergency-accesses", {"reason": " "}, 422, "emergency.reason_required"),
        ("/v1/lifts", {"block_id": str(uuid.uuid4()), "reason": "x", "valid_to": "2099-01-01T00:00:00Z",
                       "user": ANNA.user, "patient_consent": False}, 422, "lift.consent_required"),
        ("/v1/lifts", {"block_id": str(uuid.uuid4()), "reason": "x", "valid_to": "2099-01-01T00:00:00Z",
                       "user": ANNA.user, "patient_consent": True}, 404, "lift.block_not_found"),
        ("/v1/consents", {"care_unit": UA1, "user": BO.user, "valid_to": "2099-01-01T00:00:00Z"}, 422,
         "consent.scope"),
        ("/v1/relations", {"care_unit": UB1}, 403, "relation.not_own_unit"),
        ("/v1/consents", {"care_unit": UA1}, 422, "request.invalid"),
    ],
    ids=["emergency-no-reason", "lift-no-consent", "lift-no-block", "consent-two-scopes",
         "relation-other-unit", "consent-no-end"],
)
async def test_refused_commands_answer_a_stable_code_and_are_events(
    app: FastAPI, client: httpx.AsyncClient, anna: dict[str, str], path: str,
    body: dict[str, object], status: int, code: str,
) -> None:
    patient = new_patient()
    response = await client.post(path, json={"patient_id": patient, **body}, headers=anna)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert response.headers["content-type"].startswith("application/problem+json")
    refused = [e for e in await pending_events(app) if e.patient_id == patient]
    if code == "request.invalid":  # not a command: the body was not one
        assert refused == []
        return
    [event] = refused  # in the outbox before the answer went out
    assert (event.change, event.attempted, event.refusal_code) == (
        ConsentEvent.REFUSED, ConsentEvent.REGISTERED, code)
    assert (event.actor.user_hsa_id, event.actor.care_unit_hsa_id) == (ANNA.user, UA1)
    assert event.record_id == ""  # nothing was registered


async def test_a_refused_revocation_is_an_event_too(
    app: FastAPI, client: httpx.AsyncClient, anna: dict[str, str], keys: tuple[bytes, Path]
) -> None:
    patient = new_patient()
    block = await client.post("/v1/blocks", json={"patient_id": patient, "care_giver": CG_A},
                              headers=anna)
    block_id = block.json()["record_id"]
    foreign = await client.post(f"/v1/blocks/{block_id}/revoke", headers=bearer(keys[0], ERIK))
    first = await client.post(f"/v1/blocks/{block_id}/revoke", headers=anna)
    again = await client.post(f"/v1/blocks/{block_id}/revoke", headers=anna)
    unknown_id = str(uuid.uuid4())
    unknown = await client.post(f"/v1/blocks/{unknown_id}/revoke", headers=anna)
    assert [r.status_code for r in (foreign, first, again, unknown)] == [403, 200, 409, 404]
    events = [e for e in await pending_events(app) if e.record_id in (block_id, unknown_id)]
    assert [(e.change, e.attempted, e.refusal_code, e.patient_id, e.actor.user_hsa_id)
            for e in events] == [
        (ConsentEvent.REGISTERED, ConsentEvent.CHANGE_UNSPECIFIED, "", patient, ANNA.user),
        (ConsentEvent.REFUSED, ConsentEvent.REVOKED, "record.out_of_scope", patient, ERIK.user),
        (ConsentEvent.REVOKED, ConsentEvent.CHANGE_UNSPECIFIED, "", patient, ANNA.user),
        (ConsentEvent.REFUSED, ConsentEvent.REVOKED, "record.already_revoked", patient, ANNA.user),
        (ConsentEvent.REFUSED, ConsentEvent.REVOKED, "record.not_found", "", ANNA.user),
    ]
    assert {e.subject for e in events} == {ConsentEvent.BLOCK}


async def test_a_bad_patient_id_is_not_echoed(client: httpx.AsyncClient, anna: dict[str, str]) -> None:
    response = await client.post("/v1/relations", json={"patient_id": "191212121213"}, headers=anna)
    assert response.status_code == 422
    assert "191212121213" not in response.text


async def test_emergency_access_opens_for_the_clinician_who_registered_it(
    client: httpx.AsyncClient, keys: tuple[bytes, Path]
) -> None:
    patient = new_patient()
    erik = bearer(keys[0], ERIK)
    await client.post("/v1/relations", json={"patient_id": patient}, headers=erik)
    opened = await client.post("/v1/emergency-accesses", headers=erik,
                               json={"patient_id": patient, "reason": "unconscious"})
    assert opened.status_code == 201
    body = {"patient_id": patient, "categories": ["notes"], "engagements": [
        {"id": "a1", "data_controller": ANNA.care_giver, "care_unit": UA1}]}
    as_erik = (await client.post("/v1/decisions", json=body, headers=erik)).json()
    assert as_erik["basis"] == "emergency"


async def test_the_violation_list_is_for_compliance_officers(
    client: httpx.AsyncClient, keys: tuple[bytes, Path], anna: dict[str, str]
) -> None:
    assert (await client.get("/v1/violations", headers=anna)).status_code == 403
    officer = bearer(keys[0], ANNA, Role.COMPLIANCE_OFFICER)
    assert (await client.get("/v1/violations", headers=officer)).status_code == 200
    # The follow-ups of every access are the audit's: no task list here any more.
    assert (await client.get("/v1/follow-up-tasks", headers=officer)).status_code == 404
