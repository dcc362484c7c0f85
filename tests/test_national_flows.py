"""Issue 8, cross-service flows on the whole running nation (tests/national.py): nothing faked.

A producer announces a NEW engagement through the index's HTTP ingest (producer token → the
producer SDK → Kafka → the index's consumer → PostgreSQL); the simulated producer holds the new
record. The demo clinician, with relation and consent, reads it through the query service; the
access reaches the audit log (compliance search) and the patient's own extract. A block hides
it and shows only the notice; an emergency access (with a reason) opens it again and is
followed up. Every case uses a fresh patient of its own, so the tests need no order.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import MessageToDict

from npo_bench.nation import (
    Nation,
    ProducerCalls,
    audit_records,
    eventually,
    extract,
    running_nation,
    with_event,
)
from npo_deploy.tokens import DEMO_GIVER, DEMO_UNIT
from npo_platform.categories import by_number
from npo_platform.identity import Principal, Role
from npo_simulator.notifications import engagement
from npo_simulator.organisations import Kind, Organisation
from npo_simulator.records import Record

pytestmark = pytest.mark.integration
NOTES = 8  # the category every new record is written in (published by every region)


@pytest.fixture(scope="module")
def calls() -> ProducerCalls:
    return ProducerCalls(None)


@pytest.fixture(scope="module")
def nation(kafka_bootstrap_servers: str, database_url: str, calls: ProducerCalls,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    with running_nation(kafka_bootstrap_servers, database_url, tmp_path_factory.mktemp("nation"),
                        population=600, wrap_producers=calls.wrap) as running:
        yield running


@pytest.fixture(scope="module")
def _fresh_patients(nation: Nation) -> Iterator[str]:
    """People of the population with no readable record anywhere (so nothing to read yet)."""
    return (p.patient_id for p in nation.source.people
            if p.patient_id != nation.patient and not nation.producers_of(p.patient_id))


@pytest.fixture
def patient(_fresh_patients: Iterator[str]) -> str:
    return next(_fresh_patients)


@pytest.fixture
def other_patient(_fresh_patients: Iterator[str]) -> str:
    return next(_fresh_patients)


_serial = itertools.count()


def producer_elsewhere(nation: Nation) -> Organisation:
    """A region other than the demo clinician's own care giver (so consent is needed)."""
    regions = [o for o in nation.source.nation.organisations
               if o.kind is Kind.REGION and o.care_giver != DEMO_GIVER and NOTES in o.publishes]
    return sorted(regions, key=lambda o: o.logical_address)[next(_serial) % len(regions)]


async def announce_new_record(http: httpx.AsyncClient, nation: Nation, patient: str) -> Record:
    """The producer holds a new record and announces it through the index's HTTP ingest."""
    org = producer_elsewhere(nation)
    record = Record(f"flow-{uuid.uuid4().hex[:12]}", patient, org, NOTES, org.care_unit(1),
                    datetime.now().replace(microsecond=0), 0)  # naive, as the simulator's
    nation.source.add_live([record])
    body = {"transactions": [MessageToDict(engagement(record, record.time))]}
    answer = await http.post(f"{nation.index}/engagement-updates", json=body,
                             headers=nation.headers(nation.producer(org)))
    assert answer.status_code == 202, answer.text
    found = await eventually(lambda: find_content(http, nation, patient), lambda e: len(e) == 1)
    assert found[0]["logicalAddress"] == org.logical_address
    assert found[0]["sourceSystem"] == org.source_system
    assert found[0]["dataController"] == org.care_giver
    return record


async def find_content(http: httpx.AsyncClient, nation: Nation, patient: str) -> list[Any]:
    answer = await http.post(f"{nation.index}/find-content", headers=nation.headers(nation.aggregator),
                             json={"registeredResidentIdentification": patient,
                                   "serviceDomain": by_number(NOTES).service_domain})
    assert answer.status_code == 200, answer.text
    engagements: list[Any] = answer.json()["engagements"]
    return engagements


async def register(http: httpx.AsyncClient, nation: Nation, path: str, body: dict[str, Any],
                   who: Principal | Role = Role.CLINICIAN) -> httpx.Response:
    return await http.post(f"{nation.consent}/v1/{path}", json=body, headers=nation.headers(who))


async def relate_and_consent(http: httpx.AsyncClient, nation: Nation, patient: str,
                             who: Principal | Role = Role.CLINICIAN) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    unit = nation.people[who].care_unit if isinstance(who, Role) else who.care_unit
    for path, body in (("relations", {"patient_id": patient}),
                       ("consents", {"patient_id": patient, "care_unit": unit, "valid_to": later})):
        answer = await register(http, nation, path, body, who)
        assert answer.status_code == 201, answer.text


async def overview(http: httpx.AsyncClient, nation: Nation, patient: str,
                   who: Principal | Role = Role.CLINICIAN) -> httpx.Response:
    return await http.post(f"{nation.query}/v1/overview", json={"patientId": patient},
                           headers=nation.headers(who))


async def test_a_new_engagement_is_indexed_read_with_consent_and_logged_for_the_patient(
    nation: Nation, calls: ProducerCalls, patient: str, other_patient: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        record = await announce_new_record(http, nation, patient)
        await announce_new_record(http, nation, other_patient)
        await relate_and_consent(http, nation, patient)
        answer = await overview(http, nation, patient)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        refused = await overview(http, nation, other_patient)  # no relation: denied, logged too
        assert refused.status_code == 403, refused.text
        logged = await eventually(lambda: audit_records(http, nation, patient),
                                  with_event(body["accessEventId"]))
        mine = await eventually(lambda: extract(http, nation, patient), bool)
        theirs = await eventually(lambda: extract(http, nation, other_patient), bool)

    assert (body["outcome"], body["basis"]) == ("allowed", "consent")
    assert body["blockedInformationExists"] is False
    org = record.producer
    assert [(p["logicalAddress"], p["status"]) for p in body["producers"]] == [
        (org.logical_address, "DataFromSource")]
    assert [(r["documentId"], r["logicalAddress"]) for r in body["records"]] == [
        (record.record_id, org.logical_address)]
    assert calls.of(org.logical_address, patient) == 1
    [entry] = [i for i in logged if i["event_id"] == body["accessEventId"]]
    assert (entry["kind"], entry["basis"], entry["outcome"]) == ("access", "consent", "allowed")
    assert (entry["user_hsa_id"], entry["care_unit"]) == (
        nation.people[Role.CLINICIAN].sub, DEMO_UNIT)
    assert by_number(NOTES).key in entry["categories"]  # the categories asked for: all
    # The patient sees the one access to their record: who (giver, unit), when, why, what.
    assert [(i["care_giver"], i["care_unit"], i["purpose"], i["emergency"]) for i in mine] == [
        (DEMO_GIVER, DEMO_UNIT, "care", False)]
    assert by_number(NOTES).key in mine[0]["resource_types"]
    # ... and the other patient sees only the refused attempt on theirs, not this access.
    assert len(theirs) == 1
    assert theirs[0]["access_time"] != mine[0]["access_time"]


async def block(http: httpx.AsyncClient, nation: Nation, patient: str, giver: str) -> None:
    answer = await register(http, nation, "blocks", {"patient_id": patient, "care_giver": giver},
                            nation.patient_self(patient))  # the patient asks for the block
    assert answer.status_code == 201, answer.text


def assert_blocked(body: dict[str, Any], org: Organisation) -> None:
    """Only the notice shows: no record, and the producer reported withheld without where."""
    assert body["blockedInformationExists"] is True
    assert body["records"] == []
    assert [(p["logicalAddress"], p["dataController"], p["status"], p["cause"])
            for p in body["producers"]] == [(None, None, "WithheldByDecision", "blocked")]
    assert org.logical_address not in str(body)


async def test_a_block_on_the_producers_care_giver_hides_the_record_and_shows_the_notice(
    nation: Nation, calls: ProducerCalls, patient: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        record = await announce_new_record(http, nation, patient)
        await relate_and_consent(http, nation, patient)
        await block(http, nation, patient, record.producer.care_giver)
        answer = await overview(http, nation, patient)
        logged = await eventually(lambda: audit_records(http, nation, patient), bool)
    # Everything the patient has is withheld: a refusal that carries the notice and the
    # withheld producer (without where), no record; the producer is not called.
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert (body["code"], body["reasonCode"]) == ("access.denied", "blocked")
    assert_blocked({"records": [], **body}, record.producer)
    assert calls.of(record.producer.logical_address, patient) == 0
    [entry] = logged  # the refused attempt is logged too
    assert (entry["basis"], entry["outcome"], entry["reason_code"]) == (
        "no_basis", "denied", "blocked")


async def test_an_emergency_access_opens_the_block_within_its_scope_and_is_followed_up(
    nation: Nation, calls: ProducerCalls, patient: str
) -> None:
    colleague = Principal(sub="SE2321000503-L002", name="Dr Erik Ek", roles=frozenset(
        {Role.CLINICIAN}), care_unit="SE2321000503-VE002", care_giver=DEMO_GIVER,
        assignment="A2", purpose="care", title="Läkare")
    reason = "Medvetslös patient, livshotande tillstånd"
    async with httpx.AsyncClient(timeout=30) as http:
        record = await announce_new_record(http, nation, patient)
        org = record.producer
        for reader in (Role.CLINICIAN, colleague):
            await relate_and_consent(http, nation, patient, reader)
        await block(http, nation, patient, org.care_giver)
        before = await overview(http, nation, patient)
        without = await register(http, nation, "emergency-accesses", {"patient_id": patient})
        blank = await register(http, nation, "emergency-accesses",
                               {"patient_id": patient, "reason": "   "})
        opened = await register(http, nation, "emergency-accesses",
                                {"patient_id": patient, "reason": reason})
        assert opened.status_code == 201, opened.text
        # The query drops its cached decision when the consent event arrives (at most seconds).
        after = await eventually(lambda: overview(http, nation, patient),
                                 lambda a: a.status_code == 200 and a.json()["records"])
        body = after.json()
        other = await overview(http, nation, patient, colleague)  # outside the emergency's scope
        # Followed up by the audit (design.md §3): its emergency flag on the access record.
        flags = await eventually(lambda: emergency_flags(http, nation),
                                 lambda fs: any(f["event_id"] == body["accessEventId"] for f in fs))
        logged = await eventually(lambda: audit_records(http, nation, patient),
                                  with_event(body["accessEventId"]))
        mine = await eventually(lambda: extract(http, nation, patient),
                                lambda items: any(i["emergency"] for i in items))

    assert before.json()["blockedInformationExists"] is True
    assert before.json().get("records", []) == []
    for refused in (without, blank):
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "emergency.reason_required"
    assert body["basis"] == "emergency"
    assert [(r["documentId"], r["logicalAddress"]) for r in body["records"]] == [
        (record.record_id, org.logical_address)]
    assert [(p["logicalAddress"], p["status"]) for p in body["producers"]] == [
        (org.logical_address, "DataFromSource")]
    assert calls.of(org.logical_address, patient) == 1  # only the emergency read called it
    assert_blocked({"records": [], **other.json()}, org)  # the colleague is still blocked
    [flag] = [f for f in flags if f["event_id"] == body["accessEventId"]]
    assert (flag["rule"], flag["user_hsa_id"], flag["care_unit"], flag["reviewed"]) == (
        "emergency", nation.people[Role.CLINICIAN].sub, DEMO_UNIT, False)
    [entry] = [i for i in logged if i["event_id"] == body["accessEventId"]]
    assert (entry["basis"], entry["emergency_reason"]) == ("emergency", reason)
    assert "emergency" in entry["flags"]
    assert any(i["emergency"] and i["care_unit"] == DEMO_UNIT for i in mine)


async def emergency_flags(http: httpx.AsyncClient, nation: Nation) -> list[Any]:
    answer = await http.post(f"{nation.audit}/audit/flags/search", json={"rule": "emergency", "limit": 1000},
                             headers=nation.headers(Role.COMPLIANCE_OFFICER))
    assert answer.status_code == 200, answer.text
    flags: list[Any] = answer.json()["items"]
    return flags
