"""The overview across the real services (tests/national.py: index, consent, query, audit and the
simulated producers under uvicorn, the real broker and database). Nothing is faked.

The nation's population reaches the index the way producers send it (the producer SDK → Kafka →
the index's consumer → PostgreSQL); new information arrives through the index's HTTP ingest;
relation, consent and a block are registered at the consent service by HTTP; the query service
finds, decides, calls and audits over HTTP and Kafka. Each test reads a patient of its own.
The query signs its tokens with a key of its own, as deployed; the index and the producers trust
it for system tokens only.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import MessageToDict

from npo_bench.nation import Nation, ProducerCalls, access_event, running_nation
from npo_platform.categories import by_number
from npo_platform.contracts.events_pb2 import DATA_FROM_SOURCE, WITHHELD_BY_DECISION
from npo_platform.identity import Principal, Role, issue_token
from npo_simulator.notifications import engagement
from npo_simulator.organisations import Organisation
from npo_simulator.records import Record

pytestmark = pytest.mark.integration
UNIT, GIVER = "SE2321000016-U001", "SE2321000016-G001"  # a reader of no simulated care giver
READER = Principal(sub="SE2321000016-A1B2", name="Anna", roles=frozenset({Role.CLINICIAN}),
                   care_unit=UNIT, care_giver=GIVER, assignment="A1", purpose="care")


@pytest.fixture(scope="module")
def calls() -> ProducerCalls:
    return ProducerCalls(None)


@pytest.fixture(scope="module")
def nation(kafka_bootstrap_servers: str, database_url: str, calls: ProducerCalls,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    # Only a consent event may end a cached decision within a test's time (TTL 120 s).
    with running_nation(kafka_bootstrap_servers, database_url, tmp_path_factory.mktemp("nation"),
                        population=1_000, query_options={"decision_cache_ttl_s": 120.0},
                        wrap_producers=calls.wrap, query_key=True) as running:
        yield running


@pytest.fixture(scope="module")
def _patients(nation: Nation) -> Iterator[tuple[str, dict[Organisation, list[Any]]]]:
    """Patients with records at exactly two producers (the reader belongs to neither)."""
    candidates = (p.patient_id for p in nation.source.people if p.patient_id != nation.patient)
    return ((p, by_org) for p in candidates if len(by_org := nation.producers_of(p)) == 2)


@pytest.fixture
def patient(_patients: Iterator[tuple[str, dict[Organisation, list[Any]]]]
            ) -> tuple[str, dict[Organisation, list[Any]]]:
    return next(_patients)


def clinician(nation: Nation) -> dict[str, str]:
    return nation.headers(READER)


async def _register(http: httpx.AsyncClient, nation: Nation, path: str,
                    body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    answer = await http.post(f"{nation.consent}/v1/{path}", json=body,
                             headers=headers or clinician(nation))
    assert answer.status_code == 201, answer.text
    record_id: str = answer.json()["record_id"]
    return record_id


async def _relate_and_consent(http: httpx.AsyncClient, nation: Nation, patient: str) -> str:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    await _register(http, nation, "relations", {"patient_id": patient})
    return await _register(http, nation, "consents",
                           {"patient_id": patient, "care_unit": UNIT, "valid_to": later})


async def test_the_overview_across_index_consent_producers_and_audit(
    nation: Nation, calls: ProducerCalls, patient: tuple[str, dict[Organisation, list[Any]]]
) -> None:
    patient_id, by_org = patient
    blocked, allowed = sorted(by_org, key=lambda o: o.logical_address)
    async with httpx.AsyncClient(timeout=30) as http:
        await _relate_and_consent(http, nation, patient_id)
        await _register(http, nation, "blocks", {"patient_id": patient_id,  # the patient's own
                                                 "care_giver": blocked.care_giver},
                        nation.headers(nation.patient_self(patient_id)))
        answer = await http.post(f"{nation.query}/v1/overview", json={"patientId": patient_id},
                                 headers=clinician(nation))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["outcome"] == "partial"
    assert body["blockedInformationExists"] is True
    statuses = {(p["logicalAddress"], p["status"]) for p in body["producers"]}
    assert (None, "WithheldByDecision") in statuses
    assert (allowed.logical_address, "DataFromSource") in statuses
    assert calls.of(blocked.logical_address, patient_id) == 0
    assert calls.of(allowed.logical_address, patient_id) >= 1
    # Each distinct (producer, category) once: as many calls as the allowed producer's categories.
    called = {(a, c) for (a, c, who) in calls.calls if who == patient_id}
    assert sum(calls.calls[(a, c, patient_id)] for a, c in called) == len(called)
    assert len(body["records"]) == len(by_org[allowed])
    event = await access_event(nation, body["accessEventId"])
    assert event.trace_id == body["traceId"] != ""
    reported = {(p.logical_address, p.status) for p in event.producers}
    assert (blocked.logical_address, WITHHELD_BY_DECISION) in reported
    assert (allowed.logical_address, DATA_FROM_SOURCE) in reported


async def test_the_query_reads_with_a_key_of_its_own_that_signs_system_tokens_only(
    nation: Nation, calls: ProducerCalls, patient: tuple[str, dict[Organisation, list[Any]]]
) -> None:
    """The query holds no issuer key: the index answers its FindContent and the producers its
    calls on its own key's tokens, and that key cannot speak for a person anywhere."""
    assert nation.query_key is not None
    assert nation.query_key != nation.private_key
    patient_id, by_org = patient

    def signed_by_query(who: Principal) -> dict[str, str]:
        assert nation.query_key is not None
        return {"Authorization": f"Bearer {issue_token(nation.query_key, who, timedelta(minutes=5))}"}

    find = {"registeredResidentIdentification": patient_id,
            "serviceDomains": sorted({by_number(n).service_domain for n in range(1, 18)})}
    async with httpx.AsyncClient(timeout=30) as http:
        await _relate_and_consent(http, nation, patient_id)
        answer = await http.post(f"{nation.query}/v1/overview", json={"patientId": patient_id},
                                 headers=clinician(nation))
        as_system = await http.post(f"{nation.index}/find-content", json=find,
                                    headers=signed_by_query(nation.aggregator))
        as_people = [
            await http.post(f"{nation.index}/find-content", json=find,
                            headers=signed_by_query(nation.people[Role.OPERATOR])),
            await http.delete(f"{nation.simulator}/admin/behaviour",
                              headers=signed_by_query(nation.people[Role.ADMIN])),
        ]
        at_query = await http.post(f"{nation.query}/v1/overview", json={"patientId": patient_id},
                                   headers=signed_by_query(READER))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["outcome"] == "allowed"
    assert {p["status"] for p in body["producers"]} == {"DataFromSource"}
    assert len(body["records"]) == sum(len(records) for records in by_org.values())
    assert all(calls.of(org.logical_address, patient_id) >= 1 for org in by_org)
    assert as_system.status_code == 200, as_system.text
    assert len(as_system.json()["engagements"]) >= len(by_org)
    for refused in as_people:
        assert (refused.status_code, refused.json()["code"]) == (401, "token.signer")
    assert (at_query.status_code, at_query.json()["code"]) == (401, "token.signature")


async def _sse(lines: AsyncIterator[str], wanted: str) -> dict[str, Any]:
    name = ""
    async for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: ") and name == wanted:
            data: dict[str, Any] = json.loads(line.removeprefix("data: "))
            return data
    raise AssertionError(f"the stream ended before a {wanted!r} event")


async def _announce_new(http: httpx.AsyncClient, nation: Nation, org: Organisation,
                        patient: str, category: int) -> Record:
    """A new record at ``org``, announced through the index's HTTP ingest with its token."""
    record = Record(f"new-{uuid.uuid4().hex[:12]}", patient, org, category, org.care_unit(1),
                    datetime.now().replace(microsecond=0), 0)  # naive, as the simulator's
    nation.source.add_live([record])
    answer = await http.post(f"{nation.index}/engagement-updates",
                             headers=nation.headers(nation.producer(org)),
                             json={"transactions": [MessageToDict(engagement(record, record.time))]})
    assert answer.status_code == 202, answer.text
    return record


async def test_new_information_in_the_index_is_pushed_then_streamed(
    nation: Nation, patient: tuple[str, dict[Organisation, list[Any]]]
) -> None:
    patient_id, by_org = patient
    org, records = sorted(by_org.items(), key=lambda item: item[0].logical_address)[0]
    async with httpx.AsyncClient(timeout=30) as http:
        await _relate_and_consent(http, nation, patient_id)
        subscription = {"patientId": patient_id}
        async with http.stream("POST", f"{nation.query}/v1/subscriptions", json=subscription,
                               headers=clinician(nation)) as pushed:
            assert pushed.status_code == 200
            lines = pushed.aiter_lines()
            await _sse(lines, "subscribed")
            new = await _announce_new(http, nation, org, patient_id, records[-1].category)
            async with asyncio.timeout(30):
                notice = await _sse(lines, "change")
        assert notice["logicalAddress"] == org.logical_address
        async with http.stream("POST", f"{nation.query}/v1/overview/stream",
                               json={"patientId": patient_id}, headers=clinician(nation)) as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            accepted = await _sse(lines, "accepted")
            first = await _sse(lines, "producer")
            summary = await _sse(lines, "summary")
    assert accepted["producersCalled"] >= 1
    assert first["producer"]["status"] == "DataFromSource"
    assert first["records"]
    assert summary["outcome"] == "allowed"
    assert len(summary["order"]) == sum(len(r) for r in by_org.values()) + 1
    assert [new.record_id, org.source_system] in summary["order"]


async def test_subscribing_needs_the_readers_relation_as_the_consent_service_stands(
    nation: Nation, patient: tuple[str, dict[Organisation, list[Any]]]
) -> None:
    """The query asks the consent service's standing: no relation, 403; a relation without
    consent is enough to subscribe (what is announced is decided per change)."""
    patient_id, _ = patient
    subscription = {"patientId": patient_id}
    async with httpx.AsyncClient(timeout=30) as http:
        refused = await http.post(f"{nation.query}/v1/subscriptions", json=subscription,
                                  headers=clinician(nation))
        await _register(http, nation, "relations", {"patient_id": patient_id})
        async with http.stream("POST", f"{nation.query}/v1/subscriptions", json=subscription,
                               headers=clinician(nation)) as pushed:
            assert pushed.status_code == 200
            subscribed = await _sse(pushed.aiter_lines(), "subscribed")
    assert refused.status_code == 403
    assert refused.json()["code"] == "relation.missing"
    assert len(subscribed["categories"]) == 17


async def test_a_revoked_consent_ends_cached_access_at_once(
    nation: Nation, patient: tuple[str, dict[Organisation, list[Any]]]
) -> None:
    patient_id, _ = patient
    body = {"patientId": patient_id}
    async with httpx.AsyncClient(timeout=30) as http:
        consent = await _relate_and_consent(http, nation, patient_id)
        for _ in range(2):  # the second read is answered from the cached decision
            allowed = await http.post(f"{nation.query}/v1/overview", json=body,
                                      headers=clinician(nation))
            assert allowed.json()["outcome"] == "allowed"
        revoked = await http.post(f"{nation.consent}/v1/consents/{consent}/revoke",
                                  headers=clinician(nation))
        assert revoked.status_code == 200, revoked.text
        began = asyncio.get_running_loop().time()
        async with asyncio.timeout(20):  # far below the 120 s cache TTL
            while True:
                after = await http.post(f"{nation.query}/v1/overview", json=body,
                                        headers=clinician(nation))
                if after.status_code == 403:
                    break
                await asyncio.sleep(0.1)
    assert after.json()["reasonCode"] == "no_consent"
    assert asyncio.get_running_loop().time() - began < 20
