"""The overview over the real stack: real simulated producers over HTTP, the real broker and
database; the index and consent service are in-memory fakes behind the query's Protocols."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from query_fakes import FakeConsent, FakeIndex
from query_fixtures import (
    SPANS,
    Simulator,
    access_events,
    clinician,
    index_entries,
    patient_with,
    query_app,
    running,
    targets,
)

from npo_platform.contracts.events_pb2 import (
    DATA_FROM_SOURCE,
    DENIED,
    NO_DATA_SYNCH_FAILED,
    NOT_AUTHORISED_BY_ROUTING,
    PARTIAL,
    WITHHELD_BY_DECISION,
)
from npo_query.api import OverviewOut
from npo_simulator.organisations import nation

pytestmark = pytest.mark.integration


def _index(patient: str) -> FakeIndex:
    return FakeIndex({patient: index_entries(patient)})


async def _overview(client: httpx.AsyncClient, patient: str, *categories: str) -> httpx.Response:
    body = {"patientId": patient, "categories": list(categories)}
    return await client.post("/v1/overview", json=body, headers=clinician())


async def test_only_producers_with_data_are_called_each_once(make: Any, fresh: Simulator,
                                                              kafka_bootstrap_servers: str) -> None:
    patient = patient_with(min_producers=2)
    config = make()
    index = _index(patient)
    async with running(query_app(config, index, FakeConsent())) as client:
        answer = await _overview(client, patient)
    assert answer.status_code == 200, answer.text
    assert index.calls == 1  # one FindContent for all eight service domains
    body = answer.json()
    expected = targets(patient)
    assert set(fresh.counter.calls) == expected
    assert all(count == 1 for count in fresh.counter.calls.values())
    assert body["producersCalled"] == len(expected) < len(nation().producers)
    assert {p["status"] for p in body["producers"]} == {"DataFromSource"}
    assert body["outcome"] == "allowed"
    assert OverviewOut.model_validate(body).model_dump(mode="json", by_alias=True) == body
    [event] = await access_events(kafka_bootstrap_servers, config.access_topic, 1)
    assert event.patient_id == patient
    assert event.actor.user_hsa_id == "SE2321000016-A1B2"
    assert {p.status for p in event.producers} == {DATA_FROM_SOURCE}
    assert sum(p.record_count for p in event.producers) == len(body["records"])


async def test_a_slow_producer_times_out_with_its_cause_while_the_others_answer(
    make: Any, fresh: Simulator, kafka_bootstrap_servers: str
) -> None:
    patient = patient_with(min_producers=2)
    slow = sorted(targets(patient))[0][0]
    await fresh.behave(slow, timeout=True, hang_s=30)
    config = make(producer_timeout_s=0.5)
    began = time.perf_counter()
    async with running(query_app(config, _index(patient), FakeConsent())) as client:
        answer = await _overview(client, patient)
    assert time.perf_counter() - began < 5
    body = answer.json()
    assert answer.status_code == 200
    assert body["outcome"] == "partial"
    assert body["reasonCode"] == "producer_failed"
    slow_ones = [p for p in body["producers"] if p["logicalAddress"] == slow]
    assert slow_ones
    assert all(p["status"] == "NoDataSynchFailed" and p["cause"] == "timeout"
                             for p in slow_ones)
    others = [p for p in body["producers"] if p["logicalAddress"] != slow]
    assert others
    assert all(p["status"] == "DataFromSource" for p in others)
    assert body["records"]
    assert all(r["logicalAddress"] != slow for r in body["records"])
    [event] = await access_events(kafka_bootstrap_servers, config.access_topic, 1)
    failed = [p for p in event.producers if p.status == NO_DATA_SYNCH_FAILED]
    assert event.outcome == PARTIAL
    assert failed
    assert {(p.cause_code, p.causing_agent) for p in failed} == {("timeout", slow)}


async def test_failures_carry_their_cause_never_unknown(make: Any, fresh: Simulator) -> None:
    patient = patient_with(min_producers=2)
    down = sorted(targets(patient))[0][0]
    await fresh.behave(down, outage=True)
    async with running(query_app(make(), _index(patient), FakeConsent())) as client:
        body = (await _overview(client, patient)).json()
    failed = [p for p in body["producers"] if p["logicalAddress"] == down]
    assert failed
    assert all(p["cause"] == "http_status" and p["httpStatus"] == 503 for p in failed)


async def test_withheld_and_unrouted_producers_are_reported_not_hidden_nor_called(
    make: Any, fresh: Simulator, kafka_bootstrap_servers: str
) -> None:
    patient = patient_with(min_producers=3)
    entries = index_entries(patient)
    addresses = sorted({e.logical_address for e in entries})
    blocked = next(e.data_controller for e in entries if e.logical_address == addresses[0])
    unrouted = addresses[1]
    config = make(unauthorised=[unrouted])
    consent = FakeConsent(blocked={blocked})
    async with running(query_app(config, _index(patient), consent)) as client:
        answer = await _overview(client, patient)
    body = answer.json()
    assert answer.status_code == 200
    assert body["outcome"] == "partial"
    statuses = {(p["logicalAddress"], p["status"], p["cause"]) for p in body["producers"]}
    assert (None, "WithheldByDecision", "blocked") in statuses  # not *where* it is blocked
    assert (unrouted, "NotAuthorisedByRouting", "not_in_routing") in statuses
    assert (addresses[2], "DataFromSource", None) in statuses
    assert body["blockedInformationExists"] is True
    assert {address for address, _ in fresh.counter.calls} == {addresses[2]}
    [event] = await access_events(kafka_bootstrap_servers, config.access_topic, 1)
    reported = {(p.logical_address, p.status, p.cause_code) for p in event.producers}
    assert (addresses[0], WITHHELD_BY_DECISION, "blocked") in reported  # the log says where
    assert (unrouted, NOT_AUTHORISED_BY_ROUTING, "not_in_routing") in reported
    assert (addresses[2], DATA_FROM_SOURCE, "") in reported


async def test_a_producer_without_consent_is_reported_with_where_and_why(
    make: Any, fresh: Simulator
) -> None:
    patient = patient_with(min_producers=2)
    entries = index_entries(patient)
    first = sorted(entries, key=lambda e: e.logical_address)[0]
    consent = FakeConsent(no_consent={first.data_controller})
    async with running(query_app(make(), _index(patient), consent)) as client:
        body = (await _overview(client, patient)).json()
    assert body["outcome"] == "partial"
    assert body["reasonCode"] == "no_consent"
    withheld = [p for p in body["producers"] if p["status"] == "WithheldByDecision"]
    assert withheld
    assert {p["logicalAddress"] for p in withheld} == {first.logical_address}
    assert all(p["cause"] == "no_consent" for p in withheld)
    assert first.logical_address not in {address for address, _ in fresh.counter.calls}


async def test_results_are_sorted_newest_first_and_de_duplicated(make: Any) -> None:
    patient = patient_with(min_producers=2)
    entries = index_entries(patient)
    real = entries[0]
    alias = "SE5565594230-ALIAS"
    doubled = [*entries, *(e.__class__(e.service_domain, e.categorization, alias,
                                       e.source_system, e.data_controller)
                           for e in entries if e.logical_address == real.logical_address)]
    config = make(aliases={alias: real.logical_address})
    index = FakeIndex({patient: doubled})
    async with running(query_app(config, index, FakeConsent())) as client:
        body = (await _overview(client, patient)).json()
    ids = [(r["documentId"], r["sourceSystem"]) for r in body["records"]]
    assert len(ids) == len(set(ids))
    alias_results = [p for p in body["producers"] if p["logicalAddress"] == alias]
    assert alias_results
    assert all(p["recordCount"] > 0 for p in alias_results)
    total = sum(p["recordCount"] for p in body["producers"])
    assert total > len(ids)  # the same documents came twice and are shown once
    times = [r["time"] for r in body["records"]]
    assert times == sorted(times, reverse=True)


async def test_producers_continuation_is_followed_to_the_end(make: Any, fresh: Simulator) -> None:
    patient = patient_with(min_producers=1, min_records_at_one=3)
    entries = index_entries(patient)
    config = make(producer_page_size=1)
    async with running(query_app(config, _index(patient), FakeConsent())) as client:
        body = (await _overview(client, patient)).json()
    assert len(body["records"]) == len(entries)
    assert max(fresh.counter.calls.values()) >= 3  # one page per record at the busiest target
    assert sum(fresh.counter.calls.values()) == len(entries)


async def test_a_denied_decision_is_audited_and_answered_403(
    make: Any, fresh: Simulator, kafka_bootstrap_servers: str
) -> None:
    patient = patient_with(min_producers=2)
    config = make()
    consent = FakeConsent(related=False)
    async with running(query_app(config, _index(patient), consent)) as client:
        answer = await _overview(client, patient)
    assert answer.status_code == 403
    assert answer.json()["code"] == "access.denied"
    assert answer.json()["reasonCode"] == "no_relation"
    assert "records" not in answer.json()
    assert not fresh.counter.calls
    [event] = await access_events(kafka_bootstrap_servers, config.access_topic, 1)
    assert event.outcome == DENIED
    assert event.reason_code == "no_relation"


async def test_consent_unreachable_fails_closed_with_503_and_an_audited_denial(
    make: Any, fresh: Simulator, kafka_bootstrap_servers: str
) -> None:
    patient = patient_with(min_producers=2)
    config = make()
    async with running(query_app(config, _index(patient), FakeConsent(down=True))) as client:
        answer = await _overview(client, patient)
    assert answer.status_code == 503
    assert answer.json()["code"] == "decision.unavailable"
    assert not fresh.counter.calls
    [event] = await access_events(kafka_bootstrap_servers, config.access_topic, 1)
    assert event.outcome == DENIED
    assert event.reason_code == "decision_unavailable"


async def test_one_trace_covers_decision_index_producers_and_access_event(
    make: Any, kafka_bootstrap_servers: str
) -> None:
    patient = patient_with(min_producers=2)
    config = make()
    SPANS.clear()
    async with running(query_app(config, _index(patient), FakeConsent())) as client:
        body = (await _overview(client, patient)).json()
    trace_id = body["traceId"]
    assert len(trace_id) == 32
    spans = [s for s in SPANS.get_finished_spans()
             if s.context is not None and format(s.context.trace_id, "032x") == trace_id]
    names = [s.name for s in spans]
    assert {"decision", "index lookup", "access event"} <= set(names)
    assert names.count("producer call") == body["producersCalled"]
    # The access event's span is the send's own PRODUCER span: no second one inside it.
    [access] = [s for s in spans if s.name == "access event"]
    assert (access.attributes or {}).get("messaging.destination.name") == config.access.name
    assert not [name for name in names if name.startswith("publish ")]
    [event] = await access_events(kafka_bootstrap_servers, config.access_topic, 1)
    assert event.trace_id == trace_id


async def test_the_patient_id_is_validated(make: Any) -> None:
    async with running(query_app(make(), FakeIndex(), FakeConsent())) as client:
        answer = await _overview(client, "191212121213")
        unknown = await client.post("/v1/overview", json={"patientId": "191212121212",
                                                          "categories": ["nonsense"]},
                                    headers=clinician())
        anonymous = await client.post("/v1/overview", json={"patientId": "191212121212"})
    assert answer.status_code == 422
    assert answer.json()["code"] == "patient_id.invalid"
    assert "191212121213" not in answer.text
    assert unknown.status_code == 422
    assert anonymous.status_code == 401
