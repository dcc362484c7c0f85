"""Ingest over the real broker and database: every access event becomes exactly one record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from audit_fixtures import access_event, patient, relation_event

from npo_audit.config import AuditSettings
from npo_audit.domain import Kind
from npo_audit.main import Worker, build_worker, open_store
from npo_audit.service import verify_log
from npo_audit.signing import load_verifier
from npo_audit.store_pg import PostgresAuditStore
from npo_platform.contracts import AccessEvent
from npo_platform.kafka import EventPublisher

pytestmark = pytest.mark.integration


@pytest.fixture
async def publisher(topic_settings: AuditSettings) -> AsyncIterator[EventPublisher]:
    producer = EventPublisher(topic_settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def _until(condition: Callable[[], bool], within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def _consume_until(worker: Worker, handled: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await _until(lambda: worker.access.stats.handled + worker.access.stats.dead_lettered >= handled
                     or task.done())
    finally:
        stop.set()
        await task


async def _publish(publisher: EventPublisher, settings: AuditSettings, events: list[AccessEvent]) -> None:
    topic = settings.access
    await asyncio.gather(*[await publisher.send(topic, e.patient_id, e) for e in events])


async def _duplicated_ids(store: PostgresAuditStore) -> int:
    pool = store._pool  # the test peeks at the table itself
    return int(await pool.fetchval(
        "SELECT count(*) FROM (SELECT event_id FROM record GROUP BY event_id HAVING count(*) > 1) d"
    ))


async def test_every_access_event_becomes_exactly_one_record_also_after_redelivery_and_replay(
    topic_settings: AuditSettings, publisher: EventPublisher
) -> None:
    events = [access_event(patient(i % 50)) for i in range(300)]
    bad = access_event("not-a-patient-id")
    await publisher.publish(topic_settings.consent, patient(1), relation_event(patient(1)))
    await _publish(publisher, topic_settings, events)
    await _publish(publisher, topic_settings, [*events[::2], bad])  # redelivered by a producer retry

    async with open_store(topic_settings) as (_, store):
        worker = await build_worker(topic_settings, store)
        await _consume_until(worker, 451)
        assert worker.access.stats.dead_lettered == 1  # the malformed one, with its reason
        assert await store.count(Kind.ACCESS) == 300
        # A replay of the whole topic by a new consumer group adds nothing either.
        replay = await build_worker(topic_settings.model_copy(update={"consumer_group": "replay"}), store)
        await _consume_until(replay, 451)
        assert await store.count(Kind.ACCESS) == 300
        assert await store.count(Kind.CONSENT) == 1
        assert await _duplicated_ids(store) == 0
        report = await verify_log(store, load_verifier(topic_settings.keys_dir))
    assert report.ok, [f.describe() for f in report.findings]
    assert sum(n for chain, n in report.verified.items() if chain.startswith("access-")) == 300
