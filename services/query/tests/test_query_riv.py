"""The overview as RIV-TA consumers read it (Inera's aggregating platform's contracts): the same
records as the JSON overview, a ProcessingStatus entry per source (a blocked one never named),
one access event per request with the platform's correlation id and the reader's system, and a
fault with a stable code (no data, nothing logged) for what is not a valid aggregated read.

Real simulated producers over HTTP, the real broker and database; index and consent are the
query's in-memory fakes (query_fakes)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import requests
import zeep
from lxml import etree
from query_fakes import FakeConsent, FakeIndex
from query_fixtures import (
    SOURCE,
    Simulator,
    access_events,
    clinician,
    index_entries,
    query_app,
    running,
    token,
)
from riv_client import AGGREGATOR, CONSUMER, answer_of, message, post, read

from npo_deploy.testing import serve
from npo_platform.contracts.events_pb2 import DENIED
from npo_platform.identity import Role
from npo_rivta.headers import CausingAgent, SourceStatus, StatusCode
from npo_rivta.read_contracts import CARE_DOCUMENTATION, LABORATORY_ORDER_OUTCOME, READ_CONTRACTS
from npo_rivta.records import PERSONNUMMER_OID, ReadContract
from npo_rivta.testing import attacks

pytestmark = pytest.mark.integration
NOTES, LABORATORY = 8, 4


def _two_producers_of(category: int) -> tuple[str, list[tuple[str, str]]]:
    """A patient whose records of ``category`` are at two producers: (address, care giver)."""
    for person in SOURCE.population:
        where = sorted({(r.producer.logical_address, r.producer.care_giver)
                        for r in SOURCE.histories.of(person)
                        if r.category == category and not r.social_services})
        if len(where) == 2:
            return person.patient_id, where
    raise AssertionError("no patient with records at two producers")


async def _json(client: httpx.AsyncClient, patient: str, category: str) -> dict[str, Any]:
    answer = await client.post("/v1/overview", json={"patientId": patient, "categories": [category]},
                               headers=clinician())
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _status(found: list[SourceStatus], address: str) -> SourceStatus:
    [status] = [s for s in found if s.logical_address == address]
    return status


@pytest.mark.parametrize(("contract", "category", "number"), [
    (CARE_DOCUMENTATION, "notes", NOTES), (LABORATORY_ORDER_OUTCOME, "laboratory", LABORATORY),
], ids=["GetCareDocumentation", "GetLaboratoryOrderOutcome"])
async def test_an_aggregated_read_answers_the_merged_records_and_a_status_per_source(
    make: Any, fresh: Simulator, kafka_bootstrap_servers: str, contract: ReadContract,
    category: str, number: int,
) -> None:
    patient, [(fast, _), (other, other_giver)] = _two_producers_of(number)
    config = make(decision_cache_ttl_s=0.0)  # the decision follows the consent changed below
    consent = FakeConsent()
    async with running(query_app(config, FakeIndex({patient: index_entries(patient)}),
                                 consent)) as client:
        both = await read(client, contract, patient, clinician(), "c-both")
        by_json = await _json(client, patient, category)
        await fresh.behave(other, timeout=True, hang_s=30)
        timed_out = await read(client, contract, patient, clinician(), "c-timeout")
        await fresh.reset()
        consent.no_consent = {other_giver}
        withheld = await read(client, contract, patient, clinician(), "c-withheld")
        consent.no_consent, consent.blocked = set(), {other_giver}
        response = await post(client, contract, message(contract, patient),
                              clinician(), "c-blocked")
        blocked = answer_of(contract, response, patient)

    assert both.status == 200
    assert both.fault is None
    assert both.documents == [r["document"] for r in by_json["records"]]  # same records, order
    assert {s.logical_address: s.status for s in both.sources} == {
        fast: StatusCode.DATA_FROM_SOURCE, other: StatusCode.DATA_FROM_SOURCE}
    assert all(s.in_synch and not s.from_cache and s.last_successful_synch for s in both.sources)
    assert both.correlation_id == "c-both"

    failed = _status(timed_out.sources, other)
    assert (failed.status, failed.in_synch, failed.last_successful_synch) == (
        StatusCode.NO_DATA_SYNCH_FAILED, False, None)
    assert failed.error is not None
    assert failed.last_unsuccessful_synch
    assert (failed.error.causing_agent, failed.error.error_code) == (CausingAgent.SERVICE_PRODUCER, 504)
    assert failed.error.text.startswith("timeout")
    assert _status(timed_out.sources, fast).status is StatusCode.DATA_FROM_SOURCE
    assert timed_out.documents
    assert {_source_of(d) for d in timed_out.documents} == {
        _source_of(d) for d in both.documents if _address_of(d, patient) == fast}

    no_consent = _status(withheld.sources, other)
    assert no_consent.error is not None
    assert (no_consent.status, no_consent.error.causing_agent, no_consent.error.error_code,
            no_consent.error.text) == (StatusCode.NO_DATA_SYNCH_FAILED,
                                       CausingAgent.VIRTUALIZATION_PLATFORM, 403,
                                       "no_consent: withheld by the decision")

    # A block: the source is not named; one entry at the aggregator's own address says only
    # that blocked information exists.
    assert [s.logical_address for s in blocked.sources] == [fast, AGGREGATOR]
    entry = blocked.sources[1]
    assert entry.error is not None
    assert (entry.status, entry.error.causing_agent, entry.error.error_code) == (
        StatusCode.NO_DATA_SYNCH_FAILED, CausingAgent.VIRTUALIZATION_PLATFORM, 403)
    assert other not in response.text
    assert other_giver not in response.text

    events = await access_events(kafka_bootstrap_servers, config.access_topic, 5)
    riv = [e for e in events if e.meta.correlation_id.startswith("c-")]
    assert sorted(e.meta.correlation_id for e in riv) == [
        "c-blocked", "c-both", "c-timeout", "c-withheld"]  # one each
    assert {e.actor.system_hsa_id for e in riv} == {CONSUMER}
    assert all(list(e.categories) == [category] for e in riv)


def _source_of(document: dict[str, Any]) -> str:
    return str(document["header"]["documentId"])


def _address_of(document: dict[str, Any], patient: str) -> str:
    person = SOURCE.person(patient)
    assert person is not None
    [record] = [r for r in SOURCE.histories.of(person) if r.record_id == _source_of(document)]
    return record.producer.logical_address


async def test_a_refused_read_is_a_fault_with_no_data_and_its_one_access_event(
    make: Any, kafka_bootstrap_servers: str
) -> None:
    patient, _ = _two_producers_of(NOTES)
    config = make()
    consent = FakeConsent(deny_all="no_relation")
    async with running(query_app(config, FakeIndex({patient: index_entries(patient)}),
                                 consent)) as client:
        response = await post(client, CARE_DOCUMENTATION, message(CARE_DOCUMENTATION, patient),
                              clinician(), "c-refused")
    refused = answer_of(CARE_DOCUMENTATION, response)
    assert (refused.status, refused.fault and refused.fault.code) == (500, "access.denied")
    assert refused.fault is not None
    assert "no_relation" in refused.fault.faultstring
    assert "documentId" not in response.text
    assert not refused.sources
    [event] = await access_events(kafka_bootstrap_servers, config.access_topic, 1)
    assert (event.outcome, event.reason_code, event.meta.correlation_id) == (
        DENIED, "no_relation", "c-refused")


PATIENT = "191212121212"


def _bad() -> dict[str, tuple[bytes, str]]:
    valid = message(CARE_DOCUMENTATION, PATIENT)
    other_namespace = valid.replace(CARE_DOCUMENTATION.interaction.responder_ns.encode(),
                                    b"urn:riv:clinicalprocess:healthcond:description:"
                                    b"GetCareDocumentationResponder:9")
    invalid = valid.replace(b"patientId>", b"personId>")
    return {
        "malformed XML": (valid[:-40], "xml.malformed"),
        "not an envelope": (b"<GetCareDocumentation/>", "soap.not_envelope"),
        **attacks(),
        # refused by the platform's request guard on its Content-Length, before it is read (413)
        "oversized body": (valid + b" " * (2 * 1024 * 1024), "request.too_large"),
        "wrong namespace": (other_namespace, "soap.wrong_operation"),
        "wrong operation": (message(LABORATORY_ORDER_OUTCOME, PATIENT), "soap.wrong_operation"),
        "missing LogicalAddress": (message(CARE_DOCUMENTATION, PATIENT, None), "VP003"),
        "foreign LogicalAddress": (message(CARE_DOCUMENTATION, PATIENT, "SE2321000016-X"), "VP004"),
        "schema-invalid request": (invalid, "riv.invalid_request"),
        "invalid personal identity number": (message(CARE_DOCUMENTATION, "191212121213"),
                                             "patient_id.invalid"),
    }


async def test_each_bad_message_is_a_fault_with_its_code_and_the_service_stays_healthy(
    make: Any, kafka_bootstrap_servers: str
) -> None:
    patient, _ = _two_producers_of(NOTES)
    config = make(rate_limit_user="")  # one clinician's burst; rates: test_security
    timings = {}
    async with running(query_app(config, FakeIndex({patient: index_entries(patient)}),
                                 FakeConsent())) as client:
        for name, (data, code) in _bad().items():
            began = time.perf_counter()
            response = await post(client, CARE_DOCUMENTATION, data, clinician())
            timings[name] = (time.perf_counter() - began) * 1000
            fault = answer_of(CARE_DOCUMENTATION, response).fault
            status = 413 if code == "request.too_large" else 500  # HTTP's own status kept
            assert (response.status_code, fault and fault.code) == (status, code), name
        for headers, code in (({}, "token.missing"),
                              ({"Authorization": f"Bearer {token(Role.PRODUCER)}"}, "role.missing")):
            response = await post(client, CARE_DOCUMENTATION, message(CARE_DOCUMENTATION, patient),
                                  headers)
            fault = answer_of(CARE_DOCUMENTATION, response).fault
            assert fault is not None
            assert fault.code == code
        assert (await client.get("/health")).status_code == 200
        ok = await read(client, CARE_DOCUMENTATION, patient, clinician(), "c-after")
    print("\nfault answered in ms: " + ", ".join(f"{n} {t:.1f}" for n, t in timings.items()))
    assert max(timings.values()) < 1000  # refused, not worked through (figures printed above)
    assert ok.fault is None
    assert ok.documents
    # Nothing was read for any refused message: the only access event is the valid read's.
    [event] = await access_events(kafka_bootstrap_servers, config.access_topic, 1)
    assert event.meta.correlation_id == "c-after"


async def test_zeep_built_from_the_served_wsdls_calls_every_read_contract(make: Any) -> None:
    patient = max((p.patient_id for p in list(SOURCE.population)[:400]),
                  key=lambda p: len({e.categorization for e in index_entries(p)}))
    config = make(rate_limit_user="")  # one clinician's burst; rates: test_security
    app = query_app(config, FakeIndex({patient: index_entries(patient)}), FakeConsent())
    async with serve(app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            expected = {c: len((await _json(client, patient, c))["records"]) for c in READ_CONTRACTS}

        def calls() -> dict[str, tuple[int, str | None]]:
            session = requests.Session()
            session.headers.update({**clinician(), "x-rivta-original-serviceconsumer-hsaid": CONSUMER})
            transport = zeep.Transport(session=session, timeout=10, operation_timeout=30)
            found = {}
            for category, contract in READ_CONTRACTS.items():
                client = zeep.Client(f"{base}{contract.interaction.path}?wsdl", transport=transport)
                operation = getattr(client.service, contract.interaction.name)
                person = ({"root": PERSONNUMMER_OID, "extension": patient} if contract.asks.ii
                          else {"id": patient, "type": PERSONNUMMER_OID})
                answer = operation(patientId=person, _soapheaders={"LogicalAddress": AGGREGATOR})
                result = getattr(answer, "result", None) if contract.result else None
                found[category] = (len(getattr(answer, contract.record) or []),
                                   result.resultCode if result is not None else None)
            return found

        found = await asyncio.to_thread(calls)
    assert sum(expected.values()) > 10
    assert len([n for n in expected.values() if n]) >= 4
    assert found == {c: (n, "OK" if READ_CONTRACTS[c].result else None) for c, n in expected.items()}


def test_the_wsdl_of_every_read_contract_is_served_with_its_schemas_relocated() -> None:
    from npo_query.main import create_app

    async def fetch() -> list[tuple[int, bytes]]:
        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://q") as client:
            return [((r := await client.get(f"{c.interaction.path}?wsdl")).status_code, r.content)
                    for c in READ_CONTRACTS.values()]

    for status, content in asyncio.run(fetch()):
        assert status == 200
        root = etree.fromstring(content)
        assert all(loc.startswith("http://q/riv/")
                   for loc in root.xpath("//*[local-name()='import']/@schemaLocation"))
