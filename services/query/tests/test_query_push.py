"""Push to subscribed readers from INDEX_CHANGES, and consent events invalidating cached decisions,
over the real broker (the consumers run in the app's lifespan)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from query_fakes import FakeConsent, FakeIndex
from query_fixtures import (
    Simulator,
    clinician,
    index_entries,
    patient_with,
    query_app,
    running,
    serve,
    settings,
)

from npo_deploy.testing import TopicFactory
from npo_platform.categories import by_key
from npo_platform.contracts import ConsentEvent, IndexChange, IndexChanges
from npo_platform.contracts.events_pb2 import Engagement
from npo_platform.events import new_meta
from npo_platform.kafka import EventPublisher
from npo_query.config import QuerySettings

pytestmark = pytest.mark.integration
REGION_GIVER, REGION_ADDRESS = "SE2321000131-VG", "SE2321000131-LA"
BLOCKED_GIVER = "SE2321000099-VG"


@pytest.fixture
async def publisher(kafka_bootstrap_servers: str) -> AsyncIterator[EventPublisher]:
    events = EventPublisher(kafka_bootstrap_servers, client_id="query-push-test")
    await events.start()
    yield events
    await events.stop()


@pytest.fixture
def config(tmp_path: Path, kafka_bootstrap_servers: str, database_url: str, sim: Simulator,
           kafka_topic_factory: TopicFactory) -> QuerySettings:
    return settings(tmp_path, kafka_bootstrap_servers, database_url, sim.url, kafka_topic_factory)


def _change(patient: str, giver: str, address: str, category: str = "notes") -> IndexChange:
    c = by_key(category)
    engagement = Engagement(
        registered_resident_identification=patient, service_domain=c.service_domain,
        categorization=c.categorizations[0], logical_address=address, data_controller=giver,
        source_system=address.replace("-LA", "-SYS"), most_recent_content="20260101120000",
    )
    return IndexChange(meta=new_meta("npo-index"), change=IndexChange.CREATED,
                       engagement=engagement)


def _changes(*changes: IndexChange) -> IndexChanges:
    return IndexChanges(meta=new_meta("npo-index"), changes=changes)


async def _read(lines: AsyncIterator[str], wanted: str) -> dict[str, Any]:
    name = ""
    async for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: ") and name == wanted:
            data: dict[str, Any] = json.loads(line.removeprefix("data: "))
            return data
    raise AssertionError(f"the stream ended before a {wanted!r} event")


async def test_a_related_reader_is_told_of_new_information_but_not_of_blocked_one(
    config: QuerySettings, publisher: EventPublisher
) -> None:
    patient, other = "191212121212", "200001012384"
    app = query_app(config, FakeIndex(), FakeConsent(blocked={BLOCKED_GIVER}))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        body = {"patientId": patient, "categories": ["notes", "care_plans"]}
        async with client.stream("POST", "/v1/subscriptions", json=body,
                                 headers=clinician()) as answer:
            assert answer.status_code == 200
            lines = answer.aiter_lines()
            assert (await _read(lines, "subscribed"))["categories"] == ["care_plans", "notes"]
            await publisher.publish(config.changes, other, _changes(_change(other, REGION_GIVER,
                                                                            REGION_ADDRESS)))
            # One record, as the index publishes a patient's changes of one batch: the first
            # two are not told (blocked care giver, a category not subscribed), the third is.
            await publisher.publish(config.changes, patient, _changes(
                _change(patient, BLOCKED_GIVER, "SE2321000099-LA"),
                _change(patient, REGION_GIVER, REGION_ADDRESS, "diagnoses"),
                _change(patient, REGION_GIVER, REGION_ADDRESS)))
            async with asyncio.timeout(30):
                notice = await _read(lines, "change")
    assert notice["category"] == "notes"
    assert notice["logicalAddress"] == REGION_ADDRESS
    assert notice["change"] == "created"
    assert notice["mostRecentContent"] == "20260101120000"


async def test_subscribing_needs_a_relation(config: QuerySettings) -> None:
    async with running(query_app(config, FakeIndex(), FakeConsent(related=False))) as client:
        answer = await client.post("/v1/subscriptions", json={"patientId": "191212121212"},
                                   headers=clinician())
    assert answer.status_code == 403
    assert answer.json()["code"] == "relation.missing"


async def test_a_consent_event_invalidates_the_patients_cached_decisions(
    config: QuerySettings, publisher: EventPublisher
) -> None:
    patient = patient_with(min_producers=2)
    consent = FakeConsent()
    app = query_app(config, FakeIndex({patient: index_entries(patient)}), consent)
    async with running(app) as client:
        body = {"patientId": patient}
        for _ in range(2):
            assert (await client.post("/v1/overview", json=body, headers=clinician())).is_success
        assert consent.calls == 1  # the second read used the cached decision
        cache = app.state.decision_cache
        before = cache.generation(patient)
        refused = ConsentEvent(meta=new_meta("npo-consent"), subject=ConsentEvent.CONSENT,
                               change=ConsentEvent.REFUSED, patient_id=patient)
        revoked = ConsentEvent(meta=new_meta("npo-consent"), subject=ConsentEvent.CONSENT,
                               change=ConsentEvent.REVOKED, patient_id=patient)
        await publisher.publish(config.consent, patient, refused)  # changed nothing: kept
        await publisher.publish(config.consent, patient, revoked)
        async with asyncio.timeout(30):
            while cache.generation(patient) == before:  # noqa: ASYNC110 - no event to await
                await asyncio.sleep(0.05)
        await asyncio.sleep(1)  # time for a (wrong) second bump to show
        assert cache.generation(patient) == before + 1  # the refusal, first in order, was skipped
        consent.no_consent = {e.data_controller for e in index_entries(patient)}
        after = await client.post("/v1/overview", json=body, headers=clinician())
    assert consent.calls == 2
    assert {p["status"] for p in after.json()["producers"]} == {"WithheldByDecision"}


async def test_every_worker_process_drops_its_cached_decisions_on_a_consent_event(
    config: QuerySettings, publisher: EventPublisher
) -> None:
    """QUERY_WORKERS > 1: each server process is a replica with its own cache and consumer
    group, so one consent event reaches every process's cache (not one of them)."""
    patient = patient_with(min_producers=2)
    consents = [FakeConsent(), FakeConsent()]
    apps = [query_app(config, FakeIndex({patient: index_entries(patient)}), c) for c in consents]
    async with running(apps[0]) as first, running(apps[1]) as second:
        for client in (first, second):
            for _ in range(2):
                answer = await client.post("/v1/overview", json={"patientId": patient},
                                           headers=clinician())
                assert answer.is_success
        assert [c.calls for c in consents] == [1, 1]  # each process cached its own decision
        caches = [app.state.decision_cache for app in apps]
        before = [cache.generation(patient) for cache in caches]
        revoked = ConsentEvent(meta=new_meta("npo-consent"), subject=ConsentEvent.CONSENT,
                               change=ConsentEvent.REVOKED, patient_id=patient)
        await publisher.publish(config.consent, patient, revoked)
        async with asyncio.timeout(30):
            while any(c.generation(patient) == b for c, b in zip(caches, before, strict=True)):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        for client in (first, second):
            await client.post("/v1/overview", json={"patientId": patient}, headers=clinician())
    assert [c.calls for c in consents] == [2, 2]  # both asked again
