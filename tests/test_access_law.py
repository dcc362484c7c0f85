"""The access law on every record (issue 20, design.md §5.5) over the whole running nation
(tests/national.py: index, consent, query, audit and the simulated producers on the real broker
and database), through the public APIs. Nothing is faked: the records are what the simulated
producers send (care giver and unit per record, municipal social-services records, protected
patients' contact details); relations, consents, blocks, lifts and emergency accesses are
registered at the consent service over HTTP.

Every test also checks the access log: exactly one audit record per attempt, refusals included.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from npo_bench.nation import (
    Nation,
    ProducerCalls,
    access_event,
    audit_records,
    eventually,
    extract,
    running_nation,
)
from npo_platform.categories import by_number
from npo_platform.contracts.events_pb2 import WITHHELD_BY_DECISION
from npo_platform.identity import Principal, Role
from npo_simulator.organisations import Kind, Organisation, SocialServices
from npo_simulator.records import Record

pytestmark = pytest.mark.integration
PROTECTED_FIELDS = ("address", "phone", "relatives", "location")


@pytest.fixture(scope="module")
def calls() -> ProducerCalls:
    return ProducerCalls(None)


@pytest.fixture(scope="module")
def nation(kafka_bootstrap_servers: str, database_url: str, calls: ProducerCalls,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    with running_nation(kafka_bootstrap_servers, database_url, tmp_path_factory.mktemp("law"),
                        wrap_producers=calls.wrap) as running:
        yield running


# ---- the nation's people and readers ------------------------------------------------------------

def history(nation: Nation, patient: str) -> list[Record]:
    person = nation.source.person(patient)
    assert person is not None
    return nation.source.histories.of(person)


def patients(nation: Nation) -> Iterator[tuple[str, list[Record]]]:
    for person in nation.source.people:
        if person.patient_id != nation.patient:
            yield person.patient_id, nation.source.histories.of(person)


_used: set[str] = set()


def unused(found: Iterator[tuple[str, list[Record]]]) -> tuple[str, list[Record]]:
    """The next patient no other test of this module read (each test its own patient)."""
    for patient, records in found:
        if patient not in _used:
            _used.add(patient)
            return patient, records
    raise AssertionError("no such patient in the simulated population")


def clinician(org: Organisation, unit: str, user: str = "L001") -> Principal:
    return Principal(sub=org.hsa_id(user), name=f"Dr {user}", roles=frozenset({Role.CLINICIAN}),
                     care_unit=unit, care_giver=org.care_giver, assignment="A1", purpose="care",
                     title="Läkare")


def one_region_patient(nation: Nation) -> tuple[str, list[Record], Organisation, str, str]:
    """A patient of its own whose records are all at one region, in two units or more: the
    patient, the records, the region, the unit of the first records and another unit."""
    patient, records = unused((p, r) for p, r in patients(nation) if region_with_two_units(r))
    found = region_with_two_units(records)
    assert found is not None
    return patient, records, *found


def region_with_two_units(records: list[Record]) -> tuple[Organisation, str, str] | None:
    """(region, a unit with records, another unit with records) of a patient whose every record
    is at that one region, if so."""
    if len({r.producer for r in records}) != 1 or records[0].producer.kind is not Kind.REGION:
        return None
    units = sorted({r.care_unit for r in records})
    return (records[0].producer, units[0], units[1]) if len(units) >= 2 else None


# ---- calls ----------------------------------------------------------------------------------------

async def command(http: httpx.AsyncClient, nation: Nation, who: Principal, path: str,
                  body: dict[str, Any], status: int = 201) -> httpx.Response:
    answer = await http.post(f"{nation.consent}/v1/{path}", json=body, headers=nation.headers(who))
    assert answer.status_code == status, answer.text
    return answer


async def relate(http: httpx.AsyncClient, nation: Nation, who: Principal, patient: str,
                 *, consent: bool = False) -> None:
    await command(http, nation, who, "relations", {"patient_id": patient})
    if consent:
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        await command(http, nation, who, "consents",
                      {"patient_id": patient, "care_unit": who.care_unit, "valid_to": later})


async def overview(http: httpx.AsyncClient, nation: Nation, who: Principal, patient: str,
                   status: int = 200) -> dict[str, Any]:
    answer = await http.post(f"{nation.query}/v1/overview", json={"patientId": patient},
                             headers=nation.headers(who))
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def streamed(http: httpx.AsyncClient, nation: Nation, who: Principal,
                   patient: str) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """The raw text of the streamed overview and its events in order."""
    async with http.stream("POST", f"{nation.query}/v1/overview/stream",
                           json={"patientId": patient}, headers=nation.headers(who)) as answer:
        assert answer.status_code == 200
        text = "".join([chunk async for chunk in answer.aiter_text()])
    events, name = [], ""
    for line in text.splitlines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, json.loads(line.removeprefix("data: "))))
    return text, events


async def one_audit_record_per_attempt(http: httpx.AsyncClient, nation: Nation, patient: str,
                                       attempts: int, event_ids: list[str]) -> list[Any]:
    """The patient's access records, once all ``attempts`` are in: exactly one each."""
    logged = await eventually(lambda: audit_records(http, nation, patient),
                              lambda items: len(items) >= attempts)
    assert len(logged) == attempts, [(i["outcome"], i["reason_code"]) for i in logged]
    assert {i["event_id"] for i in logged} >= set(event_ids)
    return logged


def documents(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["document"] for r in body["records"]]


def units_of(body: dict[str, Any]) -> set[str]:
    return {d["header"]["accountableHealthcareProfessional"]["healthcareProfessionalCareUnitHSAId"]
            for d in documents(body)}


# ---- the tests ------------------------------------------------------------------------------------

async def test_an_internal_block_on_one_unit_hides_exactly_that_units_records(
    nation: Nation, calls: ProducerCalls
) -> None:
    patient, records, region, own_unit, blocked_unit = one_region_patient(nation)
    reader = clinician(region, own_unit)
    at_region = [r for r in records if r.producer == region and r.announced]
    async with httpx.AsyncClient(timeout=30) as http:
        await relate(http, nation, reader, patient)  # own care giver: a relation, no consent
        await command(http, nation, reader, "blocks", {"patient_id": patient,
                                                       "care_giver": region.care_giver,
                                                       "care_unit": blocked_unit})
        body = await overview(http, nation, reader, patient)
        event = await access_event(nation, body["accessEventId"])
        await one_audit_record_per_attempt(http, nation, patient, 1, [body["accessEventId"]])

    blocked = {r.record_id for r in at_region if r.care_unit == blocked_unit}
    kept = {r.record_id for r in at_region if r.care_unit != blocked_unit}
    returned = {r["documentId"] for r in body["records"]}
    assert blocked
    assert kept <= returned  # the reader's own unit and every other unit stay readable
    assert own_unit in units_of(body)
    assert not blocked & returned
    assert blocked_unit not in json.dumps(body)  # not even where the blocked records were
    assert body["blockedInformationExists"] is True
    assert (body["outcome"], body["reasonCode"]) == ("partial", "blocked")
    assert calls.of(region.logical_address, patient) >= 1  # the producer is called: it serves both
    withheld = [(w.reason_code, w.care_giver_hsa_id, w.care_unit_hsa_id, w.record_count)
                for p in event.producers for w in p.withheld_records]
    counted = {(reason, giver, unit) for reason, giver, unit, _ in withheld}
    assert counted == {("blocked", region.care_giver, blocked_unit)}
    assert sum(n for *_, n in withheld) == len(blocked) == event.withheld_record_count


async def test_a_lift_scoped_to_the_reader_opens_the_unit_for_that_reader_only(
    nation: Nation,
) -> None:
    patient, records, region, own_unit, blocked_unit = one_region_patient(nation)
    reader, colleague = clinician(region, own_unit), clinician(region, own_unit, "L002")
    blocked = {r.record_id for r in records if r.producer == region and r.care_unit == blocked_unit}
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    async with httpx.AsyncClient(timeout=30) as http:
        await relate(http, nation, reader, patient)  # the relation is the unit's: both readers'
        block = await command(http, nation, reader, "blocks", {
            "patient_id": patient, "care_giver": region.care_giver, "care_unit": blocked_unit})
        reads: list[dict[str, Any]] = []

        async def read(who: Principal) -> dict[str, Any]:
            reads.append(await overview(http, nation, who, patient))
            return reads[-1]

        before = await read(reader)
        await command(http, nation, reader, "lifts", {
            "patient_id": patient, "block_id": block.json()["record_id"], "user": reader.sub,
            "reason": "the patient agreed at the visit", "valid_to": later,
            "patient_consent": True})
        # The query drops its cached decision when the lift's consent event arrives.
        opened = await eventually(lambda: read(reader),
                                  lambda b: blocked <= {r["documentId"] for r in b["records"]})
        other = await read(colleague)
        await one_audit_record_per_attempt(http, nation, patient, len(reads),
                                           [b["accessEventId"] for b in reads])

    assert not blocked & {r["documentId"] for r in before["records"]}
    assert opened["blockedInformationExists"] is False
    assert not blocked & {r["documentId"] for r in other["records"]}
    assert other["blockedInformationExists"] is True


async def test_without_a_relation_even_the_own_care_giver_is_refused_and_logged(
    nation: Nation, calls: ProducerCalls
) -> None:
    patient, _, region, own_unit, _ = one_region_patient(nation)
    reader = clinician(region, own_unit)
    async with httpx.AsyncClient(timeout=30) as http:
        refused = await overview(http, nation, reader, patient, status=403)
        [logged] = await one_audit_record_per_attempt(http, nation, patient, 1, [])

    assert (refused["code"], refused["reasonCode"]) == ("access.denied", "no_relation")
    assert refused["producers"] == []  # without a relation the reader learns nothing of where
    assert calls.of(region.logical_address, patient) == 0
    assert (logged["outcome"], logged["reason_code"], logged["basis"]) == (
        "denied", "no_relation", "no_basis")
    assert logged["user_hsa_id"] == reader.sub


def _social_patient(nation: Nation, mode: SocialServices) -> tuple[str, list[Record]]:
    return unused((p, r) for p, r in patients(nation)
                  if any(x.social_services and x.producer.social_services is mode for x in r))


async def test_social_services_records_are_never_returned_not_even_with_consent_and_emergency(
    nation: Nation, calls: ProducerCalls
) -> None:
    reason = "Medvetslös, misstänkt förgiftning"
    for mode in (SocialServices.OWN_ADDRESS, SocialServices.MARKED):
        patient, records = _social_patient(nation, mode)
        municipality = next(r.producer for r in records
                            if r.social_services and r.producer.social_services is mode)
        social = {r.record_id for r in records if r.social_services and r.announced}
        reader = clinician(nation.source.nation.by_name("Region Stockholm"), "SE0000000000-VE1")
        async with httpx.AsyncClient(timeout=30) as http:
            await relate(http, nation, reader, patient, consent=True)
            await command(http, nation, reader, "emergency-accesses",
                          {"patient_id": patient, "reason": reason})
            body = await overview(http, nation, reader, patient)
            text, events = await streamed(http, nation, reader, patient)
            event = await access_event(nation, body["accessEventId"])
            accepted = events[0][1]["accessEventId"]
            await one_audit_record_per_attempt(http, nation, patient, 2,
                                               [body["accessEventId"], accepted])

        assert social
        assert body["basis"] in ("consent", "emergency")
        returned = {r["documentId"] for r in body["records"]}
        streamed_ids = {r["documentId"] for name, data in events if name == "producer"
                        for r in data["records"]}
        assert not social & (returned | streamed_ids), mode
        assert all("socialServices" not in d["header"] for d in documents(body))
        assert '"socialServices"' not in text
        if mode is SocialServices.OWN_ADDRESS:
            address = municipality.social_services_address
            assert address is not None
            assert calls.of(address, patient) == 0  # never called, whatever the consent
            assert address not in json.dumps(body) + text  # nor told to the reader
            [hidden] = [p for p in event.producers if p.logical_address == address]
            assert (hidden.status, hidden.cause_code, hidden.social_services) == (
                WITHHELD_BY_DECISION, "social_services", True)
        else:  # served marked among the health-care notes: dropped and counted
            withheld = [w for p in event.producers for w in p.withheld_records]
            assert {w.reason_code for w in withheld} == {"social_services"}
            assert sum(w.record_count for w in withheld) == len(social)
            assert body["reasonCode"] != "social_services"  # the reader is not told of it


async def test_protected_fields_are_absent_from_every_record_of_a_protected_patient(
    nation: Nation,
) -> None:
    patient, records = unused((p, r) for p, r in patients(nation)
                              if nation.source.person(p).protected_identity  # type: ignore[union-attr]
                              and any(x.announced and not x.social_services for x in r))
    reader = clinician(nation.source.nation.by_name("Region Stockholm"), "SE0000000000-VE1")
    async with httpx.AsyncClient(timeout=30) as http:
        await relate(http, nation, reader, patient, consent=True)
        await command(http, nation, reader, "protected-identities",
                      {"patient_id": patient, "reason": "skyddad folkbokföring"})
        body = await overview(http, nation, reader, patient)  # no decision of before is cached
        text, events = await streamed(http, nation, reader, patient)
        event = await access_event(nation, body["accessEventId"])
        logged = await one_audit_record_per_attempt(
            http, nation, patient, 2, [body["accessEventId"], events[0][1]["accessEventId"]])

    assert body["records"]
    assert all("protected_identity" in i["flags"] for i in logged)
    sent = {r.record_id for r in records if r.announced and not r.social_services}
    assert {r["documentId"] for r in body["records"]} == sent
    for document in documents(body) + [r["document"] for name, data in events
                                       if name == "producer" for r in data["records"]]:
        assert not set(_keys(document)) & set(PROTECTED_FIELDS), document
    assert "Storgatan" not in text
    assert "Storgatan" not in json.dumps(body)
    assert sorted(body["protectedFields"]) == sorted(PROTECTED_FIELDS)
    assert event.protected_identity is True
    assert sum(p.protected_fields_removed for p in event.producers) == len(sent)


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


async def test_a_blocked_entry_tells_no_category_address_care_giver_or_unit_in_json_and_sse(
    nation: Nation, calls: ProducerCalls
) -> None:
    lab = nation.source.nation.by_name("Provlabbet AB")  # microbiology: the only producer
    microbiology = by_number(17).key
    patient, records = unused(
        (p, r) for p, r in patients(nation)
        if {x.category for x in r if x.producer == lab} >= {17}
        and any(x.producer != lab and x.producer.kind is Kind.REGION for x in r))
    units = {r.care_unit for r in records if r.producer == lab}
    reader = clinician(nation.source.nation.by_name("Region Stockholm"), "SE0000000000-VE1")
    holder = clinician(lab, lab.care_unit(1), "B001")  # the care giver holding the information
    async with httpx.AsyncClient(timeout=30) as http:
        await relate(http, nation, reader, patient, consent=True)
        await command(http, nation, holder, "blocks", {"patient_id": patient,
                                                       "care_giver": lab.care_giver})
        body = await overview(http, nation, reader, patient)
        text, events = await streamed(http, nation, reader, patient)
        event = await access_event(nation, body["accessEventId"])
        await one_audit_record_per_attempt(http, nation, patient, 2,
                                           [body["accessEventId"], events[0][1]["accessEventId"]])

    told = json.dumps({k: v for k, v in body.items() if k != "categories"})  # the asked echo
    for where in (lab.logical_address, lab.care_giver, lab.source_system, microbiology, *units):
        assert where not in told
        assert where not in text
    assert body["blockedInformationExists"] is True
    [entry] = [p for p in body["producers"] if p["cause"] == "blocked"]
    assert entry == {"logicalAddress": None, "dataController": None, "category": None,
                     "status": "WithheldByDecision", "cause": "blocked", "httpStatus": None,
                     "recordCount": 0, "durationMs": 0.0}
    assert body["producers"][-1] == entry  # last: its place in the list tells nothing either
    summary = events[-1][1]
    assert summary["blockedInformationExists"] is True
    assert [p for p in summary["producers"] if p["cause"] == "blocked"] == [entry]
    assert calls.of(lab.logical_address, patient) == 0
    # The access event keeps the full detail for compliance.
    withheld = {(p.logical_address, p.data_controller, p.categories[0]) for p in event.producers
                if p.status == WITHHELD_BY_DECISION}
    assert (lab.logical_address, lab.care_giver, microbiology) in withheld


async def test_refused_commands_are_in_the_audit_log_flagged_when_repeated_and_read_nothing(
    nation: Nation,
) -> None:
    patient, _, region, own_unit, other_unit = one_region_patient(nation)
    reader = clinician(region, own_unit)
    async with httpx.AsyncClient(timeout=30) as http:
        without = await command(http, nation, reader, "emergency-accesses",
                                {"patient_id": patient}, status=422)
        blank = await command(http, nation, reader, "emergency-accesses",
                              {"patient_id": patient, "reason": "   "}, status=422)
        elsewhere = await command(http, nation, reader, "relations",
                                  {"patient_id": patient, "care_unit": other_unit}, status=403)
        # The third refused attempt within the hour is flagged by the audit's periodic sweep.
        logged = await eventually(
            lambda: audit_records(http, nation, patient, "consent"),
            lambda items: any("repeated_refused_attempts" in i["flags"] for i in items), within=60)
        accesses = await audit_records(http, nation, patient)
        mine = await extract(http, nation, patient)

    codes = [r.json()["code"] for r in (without, blank, elsewhere)]
    assert codes == ["emergency.reason_required"] * 2 + ["relation.not_own_unit"]
    assert len(logged) == 3  # one audit record per attempt
    assert sorted((i["activity"], i["outcome"], i["reason_code"], i["user_hsa_id"]) for i in logged) == [
        ("emergency_access", "refused", "emergency.reason_required", reader.sub),
        ("emergency_access", "refused", "emergency.reason_required", reader.sub),
        ("patient_relation", "refused", "relation.not_own_unit", reader.sub)]
    assert [i["flags"] for i in sorted(logged, key=lambda i: i["event_time"])][2] == [
        "repeated_refused_attempts"]
    assert accesses == []  # nothing was read
    assert mine == []  # and the patient's extract says so
