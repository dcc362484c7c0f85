"""The HTTP clients of the index, the consent service and the producers, over real HTTP against
stand-ins that check the request exactly as the other services' current code (read, not
imported) expects it."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest
from fastapi import FastAPI, Request
from query_fixtures import serve

from npo_query.clients import HttpConsentClient, HttpIndexClient, Unavailable, pooled_session
from npo_query.domain import RecordPolicy, Status, Target
from npo_query.producers import HttpProducerClient

PATIENT = "191212121212"
DESCRIPTION = "riv:clinicalprocess:healthcond:description"
LOGISTICS = "riv:clinicalprocess:logistics:logistics"


def _index_app(pages: list[list[dict[str, Any]]], seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.post("/find-content")
    async def find(request: Request) -> dict[str, Any]:
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        page = int(body.get("pageToken", "0" * 64)[-1])
        more = page + 1 < len(pages)
        return {"engagements": pages[page], "nextPageToken": f"{page + 1:064x}" if more else None}

    return app


def _engagement(address: str) -> dict[str, Any]:
    return {"registeredResidentIdentification": PATIENT,
            "serviceDomain": "riv:clinicalprocess:healthcond:description",
            "categorization": "voo", "logicalAddress": address,
            "businessObjectInstanceIdentifier": "NA", "clinicalProcessInterestId": "NA",
            "mostRecentContent": "20250101120000", "sourceSystem": f"{address}-SYS",
            "dataController": f"{address}-VG", "owner": "SE5565594230-NPOIDX",
            "creationTime": "2025-01-01T12:00:00+00:00", "updateTime": "2025-01-01T12:00:00+00:00"}


async def test_find_content_sends_the_index_contract_and_follows_pages() -> None:
    seen: list[dict[str, Any]] = []
    app = _index_app([[_engagement("LA1")], [_engagement("LA2")]], seen)
    async with serve(app) as url, pooled_session(10) as http:
        client = HttpIndexClient(http, url, lambda: "system-token", 2.0, 500)
        found = await client.find(PATIENT, [DESCRIPTION, LOGISTICS])
    assert [e.logical_address for e in found] == ["LA1", "LA2"]
    assert found[0].data_controller == "LA1-VG"
    assert found[0].categorization == "voo"
    first, second = seen
    async with serve(app) as url, pooled_session(10) as http:
        client = HttpIndexClient(http, url, lambda: "system-token", 2.0, 500)
        assert await client.find(PATIENT, []) == []
    assert len(seen) == 2  # no call for no domains
    assert first["body"] == {"registeredResidentIdentification": PATIENT, "pageSize": 500,
                             "serviceDomains": [DESCRIPTION, LOGISTICS]}
    assert second["body"]["pageToken"] == f"{1:064x}"
    assert first["auth"] == "Bearer system-token"


async def test_an_index_error_is_unavailable_with_a_code() -> None:
    app = FastAPI()

    @app.post("/find-content")
    async def broken() -> None:
        raise RuntimeError

    async with serve(app) as url, pooled_session(10) as http:
        client = HttpIndexClient(http, url, lambda: "t", 2.0, 500)
        with pytest.raises(Unavailable) as error:
            await client.find(PATIENT, ["d"])
    assert error.value.code == "index.http_status"


async def test_an_index_that_is_not_there_or_too_slow_is_unreachable() -> None:
    app = FastAPI()

    @app.post("/find-content")
    async def slow() -> None:
        await asyncio.sleep(5)

    async with serve(app) as url, pooled_session(10) as http:
        slow_index = HttpIndexClient(http, url, lambda: "t", 0.3, 500)
        gone = HttpIndexClient(http, f"http://127.0.0.1:{_closed_port()}", lambda: "t", 2.0, 500)
        with pytest.raises(Unavailable) as timed_out:
            await slow_index.find(PATIENT, ["d"])
        with pytest.raises(Unavailable) as refused:
            await gone.find(PATIENT, ["d"])
    assert timed_out.value.code == refused.value.code == "index.unreachable"
    assert "Timeout" in str(timed_out.value)
    assert "Connect" in str(refused.value)


async def test_a_consent_service_that_is_not_there_is_unreachable() -> None:
    async with pooled_session(10) as http:
        client = HttpConsentClient(http, f"http://127.0.0.1:{_closed_port()}", 2.0)
        with pytest.raises(Unavailable) as error:
            await client.decide("t", PATIENT, ["notes"], [Target("LA1", "notes")])
    assert error.value.code == "consent.unreachable"


POLICY = {"own_care_giver": "G0", "own_closed": None, "others_closed": "no_consent",
          "closed_care_givers": ["G2"], "closed_care_units": ["U1"],
          "unit_blocked_care_givers": ["G1"]}


def _consent_app(seen: list[dict[str, Any]], policy: dict[str, Any] | None) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/decisions")
    async def decide(request: Request) -> dict[str, Any]:
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        answer = {"outcome": "partial", "basis": "consent", "reason_code": "blocked",
                  "blocked_information_exists": True, "protected_identity": False,
                  "protected_fields": [], "engagements": [
                      {"id": body["engagements"][0]["id"], "allowed": True, "basis": "consent",
                       "reason_code": None},
                      {"id": body["engagements"][1]["id"], "allowed": False, "basis": "none",
                       "reason_code": "blocked"}]}
        return answer if policy is None else answer | {"record_policy": policy}

    return app


async def test_the_decision_forwards_the_readers_token_and_maps_the_answer() -> None:
    seen: list[dict[str, Any]] = []
    targets = [Target("LA1", "notes", "G1", "S1"), Target("LA2", "notes", "G2", "S2")]
    async with serve(_consent_app(seen, POLICY)) as url, pooled_session(10) as http:
        client = HttpConsentClient(http, url, 2.0)
        decision = await client.decide("reader-token", PATIENT, ["notes"], targets)
    [call] = seen
    assert call["auth"] == "Bearer reader-token"
    assert call["body"] == {"patient_id": PATIENT, "categories": ["notes"], "engagements": [
        {"id": t.id, "data_controller": t.data_controller, "care_unit": "",
         "logical_address": t.logical_address, "social_services": False} for t in targets]}
    assert decision.outcome == "partial"
    assert decision.blocked_information_exists
    assert decision.allows(targets[0]).allowed
    assert decision.allows(targets[1]).reason_code == "blocked"
    assert decision.allows(Target("LA3", "notes")).allowed is False  # not decided: withheld
    assert decision.policy == RecordPolicy("G0", None, "no_consent", frozenset({"G2"}),
                                           frozenset({"U1"}), frozenset({"G1"}))


async def test_a_decision_without_its_record_policy_is_no_decision() -> None:
    targets = [Target("LA1", "notes", "G1", "S1"), Target("LA2", "notes", "G2", "S2")]
    async with serve(_consent_app([], None)) as url, pooled_session(10) as http:
        with pytest.raises(Unavailable) as error:  # fail closed: no record could be judged
            await HttpConsentClient(http, url, 2.0).decide("t", PATIENT, ["notes"], targets)
    assert error.value.code == "consent.invalid_answer"


def _standing_app(seen: list[dict[str, Any]], related: bool) -> FastAPI:
    app = FastAPI()
    in_force = {"record_id": "r1", "valid_from": "2025-01-01T00:00:00Z", "valid_to": None,
                "scope": "unit"}

    @app.post("/v1/standing")
    async def standing(request: Request) -> dict[str, Any]:
        seen.append({"body": await request.json(), "auth": request.headers.get("authorization")})
        return {"care_unit": "U1", "relation": in_force if related else None, "consent": None,
                "emergency": None, "protected_identity": False}

    return app


async def test_a_relation_is_the_consent_services_standing_of_the_reader() -> None:
    seen: list[dict[str, Any]] = []
    found = []
    for related in (True, False):
        async with serve(_standing_app(seen, related)) as url, pooled_session(10) as http:
            found.append(await HttpConsentClient(http, url, 2.0).has_relation("reader", PATIENT))
    assert found == [True, False]
    assert seen[0] == {"body": {"patient_id": PATIENT}, "auth": "Bearer reader"}


def _producer_app() -> FastAPI:
    app = FastAPI()

    @app.post("/garbage/{category}")
    async def garbage() -> dict[str, Any]:
        return {"records": [{"header": {"documentId": "d1"}}]}

    @app.post("/contract/{category}")
    async def contract() -> dict[str, Any]:
        professional = {"authorTime": "20250101120000",
                        "healthcareProfessionalCareUnitHSAId": "SE2321000016-U1",
                        "healthcareProfessionalCareGiverHSAId": "SE2321000016-G1"}
        marked = {"documentId": "d1", "sourceSystemHSAId": "S1", "patientId": {"id": PATIENT},
                  "accountableHealthcareProfessional": professional, "socialServices": True}
        bare = {**marked, "documentId": "d2", "socialServices": False,
                "accountableHealthcareProfessional": {"authorTime": "20250101120000"}}
        return {"records": [{"header": marked}, {"header": bare}], "continuationToken": None}

    @app.post("/other-patient/{category}")
    async def other_patient() -> dict[str, Any]:
        header = {"documentId": "d1", "sourceSystemHSAId": "S1", "patientId": {"id": "x"},
                  "accountableHealthcareProfessional": {"authorTime": "20250101120000"}}
        return {"records": [{"header": header, "body": {}}], "continuationToken": None}

    return app


async def test_producer_failures_have_a_cause_never_unknown() -> None:
    async with serve(_producer_app()) as url, aiohttp.ClientSession() as session:
        client = HttpProducerClient(session, lambda endpoint: "t", connect_timeout_s=1.0, page_size=10,
                                    max_pages=5)
        target = Target("LA1", "notes")
        garbage = await client.fetch(f"{url}/garbage", target, PATIENT, 2.0)
        other = await client.fetch(f"{url}/other-patient", target, PATIENT, 2.0)
        missing = await client.fetch(f"{url}/nowhere", target, PATIENT, 2.0)
        refused = await client.fetch(f"http://127.0.0.1:{_closed_port()}/x", target, PATIENT, 2.0)
    assert (garbage.status, garbage.cause) == (Status.NO_DATA_SYNCH_FAILED, "invalid_answer")
    assert other.cause == "invalid_answer"  # another patient's record never gets through
    assert (missing.cause, missing.http_status) == ("http_status", 404)
    assert refused.cause == "connection_error"


async def test_records_carry_their_care_giver_unit_and_social_services_marker() -> None:
    async with serve(_producer_app()) as url, aiohttp.ClientSession() as session:
        client = HttpProducerClient(session, lambda endpoint: "t", connect_timeout_s=1.0, page_size=10,
                                    max_pages=5)
        result = await client.fetch(f"{url}/contract", Target("LA1", "notes"), PATIENT, 2.0)
    assert [(r.document_id, r.care_giver, r.care_unit, r.social_services) for r in result.records] == [
        ("d1", "SE2321000016-G1", "SE2321000016-U1", True), ("d2", "", "", False)]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
