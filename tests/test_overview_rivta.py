"""The overview is the same whether producers speak this project's JSON contract or the
national read contracts (RIV-TA): the same records and statuses, the same causes when a
producer fails; and a consumer that speaks RIV-TA reads the same records through the aggregated
contracts, with a ProcessingStatus per source. Across the real services (npo_bench.nation), the
routing switched at runtime through the query service's routing admin, as an operator would."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from npo_bench.nation import Nation, audit_records, eventually, running_nation
from npo_platform.categories import by_number
from npo_platform.identity import Principal, Role
from npo_rivta.headers import (
    CORRELATION_ID,
    ORIGINAL_CONSUMER,
    CausingAgent,
    StatusCode,
    logical_address_header,
    processing_status,
)
from npo_rivta.read_contracts import CARE_DOCUMENTATION, LABORATORY_ORDER_OUTCOME, READ_CONTRACTS
from npo_rivta.records import ReadContract, documents, request
from npo_rivta.soap import CONTENT_TYPE, envelope, read_envelope, read_fault
from npo_rivta.xml import parse
from npo_simulator.organisations import Kind, Organisation
from npo_simulator.routing import routing_table

pytestmark = pytest.mark.integration
UNIT, GIVER = "SE2321000016-U001", "SE2321000016-G001"  # a reader of no simulated care giver
READER = Principal(sub="SE2321000016-A1B2", name="Anna", roles=frozenset({Role.CLINICIAN}),
                   care_unit=UNIT, care_giver=GIVER, assignment="A1", purpose="care")
NOTES, LABORATORY = 8, 4


class RivCalls:
    """ASGI wrapper of the simulated producers counting RIV-TA calls per URL."""

    def __init__(self) -> None:
        self.calls = Counter[str]()
        self.app: Any = None

    def wrap(self, app: Any) -> RivCalls:
        self.app = app
        return self

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith("/riv/"):
            self.calls[scope["path"]] += 1
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def riv_calls() -> RivCalls:
    return RivCalls()


@pytest.fixture(scope="module")
def nation(kafka_bootstrap_servers: str, database_url: str, riv_calls: RivCalls,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    with running_nation(kafka_bootstrap_servers, database_url, tmp_path_factory.mktemp("nation"),
                        population=1_000,
                        # The admin re-routes every producer one request each (_speak): no per-user
                        # rate here, it is tested in test_security.py.
                        query_options={"decision_cache_ttl_s": 120.0, "rate_limit_user": ""},
                        wrap_producers=riv_calls.wrap) as running:
        yield running


def _patient(nation: Nation) -> tuple[str, Organisation]:
    """A patient with notes and laboratory results at a region and notes at a municipality
    (home care after a hospital stay)."""
    for person in nation.source.people:
        by_org = nation.producers_of(person.patient_id)
        municipal_notes = any(o.kind is Kind.MUNICIPALITY and NOTES in {r.category for r in rs}
                              for o, rs in by_org.items())
        for org, records in by_org.items():
            numbers = {r.category for r in records}
            if org.kind is Kind.REGION and {NOTES, LABORATORY} <= numbers and municipal_notes:
                return person.patient_id, org
    raise AssertionError("no patient with regional notes and laboratory results")


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    producers = sorted(({k: v for k, v in p.items() if k != "durationMs"} for p in body["producers"]),
                       key=lambda p: (p["logicalAddress"] or "", p["category"]))
    return {"outcome": body["outcome"], "producers": producers, "records": body["records"]}


async def _overview(http: httpx.AsyncClient, nation: Nation, patient: str) -> dict[str, Any]:
    answer = await http.post(f"{nation.query}/v1/overview", json={"patientId": patient},
                             headers=nation.headers(READER))
    assert answer.status_code == 200, answer.text
    return _comparable(answer.json())


async def _speak(http: httpx.AsyncClient, nation: Nation, kinds: tuple[Kind, ...]) -> None:
    """Route the producers of ``kinds`` to their RIV-TA responders (none: back to JSON)."""
    table = routing_table(nation.source.nation, nation.simulator, rivta_kinds=kinds)
    admin = nation.headers(Role.ADMIN)
    for org in nation.source.nation.organisations:
        assert (await http.delete(f"{nation.query}/v1/routing/routes/{org.logical_address}",
                                  headers=admin)).status_code in (204, 404)
    answer = await http.put(f"{nation.query}/v1/routing/routes", json=table["routes"], headers=admin)
    assert answer.status_code == 204, answer.text


async def test_the_same_overview_whether_producers_speak_json_or_rivta(
    nation: Nation, riv_calls: RivCalls
) -> None:
    patient, region = _patient(nation)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    async with httpx.AsyncClient(timeout=30) as http:
        for path, body in (("relations", {"patient_id": patient}),
                           ("consents", {"patient_id": patient, "care_unit": UNIT, "valid_to": later})):
            answer = await http.post(f"{nation.consent}/v1/{path}", json=body,
                                     headers=nation.headers(READER))
            assert answer.status_code == 201, answer.text
        by_json = await _overview(http, nation, patient)
        assert not riv_calls.calls
        await _speak(http, nation, tuple(Kind))  # every producer, municipalities included
        by_rivta = await _overview(http, nation, patient)
        held = {by_number(r.category).key for rs in nation.producers_of(patient).values()
                for r in rs}
        assert set(riv_calls.calls) == {READ_CONTRACTS[c].interaction.path for c in held
                                        if c in READ_CONTRACTS}
        assert len(riv_calls.calls) > 2
        assert by_rivta == by_json
        categories = {r["category"] for r in by_rivta["records"]
                      if r["logicalAddress"] == region.logical_address}
        assert {"notes", "laboratory"} <= categories
        assert {r["logicalAddress"] for r in by_rivta["records"] if r["category"] == "notes"} - {
            region.logical_address}  # a municipality's notes came over RIV-TA too

        behaviour = {"error_rate": 1.0, "error_status": 503}
        await http.put(f"{nation.simulator}/admin/behaviour/{region.logical_address}",
                       json=behaviour, headers=nation.headers(Role.ADMIN))
        failing_rivta = await _overview(http, nation, patient)
        await _speak(http, nation, ())
        failing_json = await _overview(http, nation, patient)
        await http.delete(f"{nation.simulator}/admin/behaviour", headers=nation.headers(Role.ADMIN))
    assert failing_rivta == failing_json
    failed = {(p["category"], p["status"], p["cause"], p["httpStatus"])
              for p in failing_rivta["producers"] if p["logicalAddress"] == region.logical_address}
    assert ("notes", "NoDataSynchFailed", "http_status", 503) in failed
    assert ("laboratory", "NoDataSynchFailed", "http_status", 503) in failed


AGGREGATOR = "5565594230"  # the query's riv_logical_address (the national aggregating address)


def _aggregated_patient(nation: Nation) -> tuple[str, Organisation, Organisation, Organisation]:
    """A patient with notes at a region and one other producer, laboratory results at the same
    region and one more: (patient, region, the other notes producer, the other laboratory)."""
    for person in nation.source.people:
        by_org = nation.producers_of(person.patient_id)
        notes = [o for o, rs in by_org.items() if NOTES in {r.category for r in rs}]
        labs = [o for o, rs in by_org.items() if LABORATORY in {r.category for r in rs}]
        shared = [o for o in notes if o in labs and o.kind is Kind.REGION]
        if len(notes) == 2 and len(labs) == 2 and shared:
            [region] = shared
            [other_notes] = [o for o in notes if o != region]
            [other_lab] = [o for o in labs if o != region]
            if other_notes != other_lab:
                return person.patient_id, region, other_notes, other_lab
    raise AssertionError("no patient with notes and laboratory results at two producers each")


async def _riv(http: httpx.AsyncClient, nation: Nation, contract: ReadContract, patient: str,
               reader: Principal = READER) -> tuple[httpx.Response, list[dict[str, Any]]]:
    data = envelope(request(contract, patient), [logical_address_header(AGGREGATOR)])
    answer = await http.post(f"{nation.query}{contract.interaction.path}", content=data, headers={
        **nation.headers(reader), "Content-Type": CONTENT_TYPE,
        ORIGINAL_CONSUMER: "SE2321000016-JOURNAL", CORRELATION_ID: f"c-{contract.interaction.name}"})
    env = read_envelope(parse(answer.content))
    return answer, [] if read_fault(env) else documents(contract, env.body, patient)


async def _json_documents(http: httpx.AsyncClient, nation: Nation, patient: str,
                          category: str) -> list[dict[str, Any]]:
    answer = await http.post(f"{nation.query}/v1/overview",
                             json={"patientId": patient, "categories": [category]},
                             headers=nation.headers(READER))
    assert answer.status_code == 200, answer.text
    return [r["document"] for r in answer.json()["records"]]


async def test_a_rivta_consumer_reads_the_merged_records_with_a_status_per_source(
    nation: Nation,
) -> None:
    patient, region, slow, blocked = _aggregated_patient(nation)
    holder = Principal(sub="SE2321000016-H001", name="Holder", roles=frozenset({Role.CLINICIAN}),
                       care_unit=blocked.care_unit(1), care_giver=blocked.care_giver,
                       assignment="A1", purpose="care")
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    async with httpx.AsyncClient(timeout=30) as http:
        for who, path, body in ((READER, "relations", {"patient_id": patient}),
                                (READER, "consents", {"patient_id": patient, "care_unit": UNIT,
                                                      "valid_to": later}),
                                (holder, "blocks", {"patient_id": patient,
                                                    "care_giver": blocked.care_giver})):
            answer = await http.post(f"{nation.consent}/v1/{path}", json=body,
                                     headers=nation.headers(who))
            assert answer.status_code == 201, answer.text
        await _speak(http, nation, tuple(Kind))  # the producers answer over RIV-TA too
        await http.put(f"{nation.simulator}/admin/behaviour/{slow.logical_address}",
                       json={"timeout": True, "hang_s": 30}, headers=nation.headers(Role.ADMIN))
        notes, notes_documents = await _riv(http, nation, CARE_DOCUMENTATION, patient)
        lab, lab_documents = await _riv(http, nation, LABORATORY_ORDER_OUTCOME, patient)
        json_notes = await _json_documents(http, nation, patient, "notes")
        json_lab = await _json_documents(http, nation, patient, "laboratory")
        stranger = next(p.patient_id for p in nation.source.people
                        if p.patient_id != patient and nation.producers_of(p.patient_id))
        refused, nothing = await _riv(http, nation, CARE_DOCUMENTATION, stranger)
        await http.delete(f"{nation.simulator}/admin/behaviour", headers=nation.headers(Role.ADMIN))
        await _speak(http, nation, ())
        logged = await eventually(lambda: audit_records(http, nation, patient),
                                  lambda items: len(items) >= 4)
        logged_refusal = await eventually(lambda: audit_records(http, nation, stranger),
                                          lambda items: len(items) >= 1)

    assert (notes.status_code, lab.status_code) == (200, 200)
    assert notes_documents == json_notes  # the same records, in the same order
    assert lab_documents == json_lab
    assert notes_documents
    assert lab_documents
    notes_status = {s.logical_address: s for s in processing_status(read_envelope(parse(notes.content)))}
    assert set(notes_status) == {region.logical_address, slow.logical_address}
    assert notes_status[region.logical_address].status is StatusCode.DATA_FROM_SOURCE
    timed_out = notes_status[slow.logical_address]
    assert timed_out.status is StatusCode.NO_DATA_SYNCH_FAILED
    assert timed_out.error is not None
    assert (timed_out.error.causing_agent, timed_out.error.error_code) == (
        CausingAgent.SERVICE_PRODUCER, 504)
    lab_status = processing_status(read_envelope(parse(lab.content)))
    assert [s.logical_address for s in lab_status] == [region.logical_address, AGGREGATOR]
    assert lab_status[0].status is StatusCode.DATA_FROM_SOURCE
    assert lab_status[1].status is StatusCode.NO_DATA_SYNCH_FAILED  # blocked information exists
    for where in (blocked.logical_address, blocked.care_giver, blocked.source_system):
        assert where not in lab.text  # never where
    fault = read_fault(read_envelope(parse(refused.content)))
    assert fault is not None
    assert (refused.status_code, fault.code, nothing) == (500, "access.denied", [])
    assert len(logged) == 4  # exactly one audit record per request (two RIV-TA, two JSON)
    assert len(logged_refusal) == 1
