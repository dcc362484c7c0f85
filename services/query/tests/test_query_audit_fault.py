"""Audit before answer: with the broker stopped the overview answers 503 (a RIV-TA read a SOAP
fault) and returns no data.

The broker here is a private one, started and stopped by this test (the session broker is
shared with the other tests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from query_fakes import FakeConsent, FakeIndex
from query_fixtures import (
    Simulator,
    clinician,
    index_entries,
    patient_with,
    query_app,
    running,
    settings,
)
from riv_client import answer_of, message, post

from npo_deploy import kafka
from npo_deploy.fhir_validator import FhirValidator
from npo_deploy.kafka import LocalKafka
from npo_deploy.testing import isolated_kafka
from npo_platform.contracts import AccessEvent
from npo_platform.contracts.events_pb2 import NOT_DELIVERED
from npo_platform.kafka import EventPublisher
from npo_platform.settings import kafka_client_options
from npo_query.config import QuerySettings
from npo_rivta.read_contracts import CARE_DOCUMENTATION

pytestmark = pytest.mark.integration


async def test_with_the_broker_stopped_the_overview_is_503_with_no_data(
    tmp_path: Path, database_url: str, sim: Simulator
) -> None:
    async with _private_broker(tmp_path, database_url, sim) as (broker, config, patient):
        publisher = EventPublisher(broker.bootstrap, client_id="npo-query-fault-test")
        app = query_app(config, FakeIndex({patient: index_entries(patient)}), FakeConsent(),
                        publisher=publisher)
        await publisher.start()
        async with running(app) as client:
            body = {"patientId": patient}
            ok = await client.post("/v1/overview", json=body, headers=clinician())
            assert ok.status_code == 200
            assert ok.json()["records"]
            await asyncio.to_thread(kafka.stop, broker)
            began = time.perf_counter()
            refused = await client.post("/v1/overview", json=body, headers=clinician())
            streamed = await client.post("/v1/overview/stream", json=body, headers=clinician())
            riv = await post(client, CARE_DOCUMENTATION, message(CARE_DOCUMENTATION, patient),
                             clinician())
            elapsed = time.perf_counter() - began
            await asyncio.to_thread(kafka.start, broker)  # back again: reads are audited again
            again = await client.post("/v1/overview", json=body, headers=clinician())
        assert again.status_code == 200
        assert again.json()["records"]
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "audit.unavailable"
        assert "records" not in refused.json()
        assert "documentId" not in refused.text
        assert streamed.status_code == 503
        assert "documentId" not in streamed.text
        fault = answer_of(CARE_DOCUMENTATION, riv).fault
        assert fault is not None
        assert (riv.status_code, fault.faultcode, fault.code) == (500, "soap:Server",
                                                                  "audit.unavailable")
        assert "documentId" not in riv.text
        assert elapsed < 15  # three refusals, each bounded by the 2 s audit timeout
        async with asyncio.timeout(30):
            await publisher.stop()
        # The refused reads' events were not lost, only late: each arrives with a correction
        # saying its reader got no data; the two answered reads have none.
        events = await _access_events(broker.bootstrap, config.access_topic)
        corrected = {e.meta.correlation_id for e in events if e.outcome == NOT_DELIVERED}
        reads = [e for e in events if e.outcome != NOT_DELIVERED]
        answered = {ok.json()["accessEventId"], again.json()["accessEventId"]}
        assert {e.meta.event_id for e in reads} - answered == corrected  # measured: 3 of 3
        assert len(corrected) <= 3
        assert not corrected & answered


async def test_with_the_broker_stopped_fhir_reads_are_503_operation_outcomes_with_no_data(
    tmp_path: Path, database_url: str, sim: Simulator, fhir_validator: FhirValidator
) -> None:
    async with _private_broker(tmp_path, database_url, sim) as (broker, config, patient):
        app = query_app(config, FakeIndex({patient: index_entries(patient)}), FakeConsent())
        reads = (("/fhir/r4/Condition/_search", {"patient": patient}),
                 ("/fhir/r4/Patient/$summary", {"identifier": patient}))
        async with running(app) as client:
            ok = [await client.post(path, data=form, headers=clinician()) for path, form in reads]
            await asyncio.to_thread(kafka.stop, broker)
            refused = [await client.post(path, data=form, headers=clinician()) for path, form in reads]
            await asyncio.to_thread(kafka.start, broker)  # its buffered events leave before the app stops
    assert [a.status_code for a in ok] == [200, 200]
    assert '"identifier"' in ok[0].text
    for answer in refused:
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/fhir+json"
        outcome = answer.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert [c["code"] for c in outcome["issue"][0]["details"]["coding"]] == ["audit.unavailable"]
        assert "entry" not in answer.text
        assert "documentId" not in answer.text
        assert fhir_validator.errors(outcome) == []


@asynccontextmanager
async def _private_broker(tmp_path: Path, database_url: str,
                          sim: Simulator) -> AsyncIterator[tuple[LocalKafka, QuerySettings, str]]:
    """A broker of the test's own (stopped at the end), the query's settings on it, a patient."""
    broker = isolated_kafka(tmp_path / "kafka")
    await asyncio.to_thread(kafka.start, broker)
    try:
        names = iter(f"test.query.fault.{n}" for n in range(3))
        config = settings(tmp_path, broker.bootstrap, database_url, sim.url, lambda: next(names),
                          run_consumers=False, audit_timeout_s=2.0)
        yield broker, config, patient_with(min_producers=2)
    finally:
        await asyncio.to_thread(kafka.stop, broker)


async def _access_events(bootstrap: str, topic: str) -> list[AccessEvent]:
    consumer = AIOKafkaConsumer(topic, **kafka_client_options(bootstrap), auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        return [AccessEvent.FromString(r.value) for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()
