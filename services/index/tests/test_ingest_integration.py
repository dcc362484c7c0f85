"""Ingest against the real broker and database: freshness, idempotence, replay, dead letters."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from index_helpers import T0, changes_in, engagement, patient, schema_name, topic_name, tx, update, wait_for

from npo_index.config import IndexSettings
from npo_index.main import Worker, open_worker
from npo_index.store import FindQuery
from npo_platform.contracts import EngagementUpdate, IndexChange, IndexChanges
from npo_platform.events import event_headers, header
from npo_platform.kafka import DLQ_REASON, EventPublisher
from npo_platform.settings import kafka_client_options

pytestmark = pytest.mark.integration
DOMAIN = "riv:clinicalprocess:healthcond:description"


@dataclass
class Running:
    settings: IndexSettings
    worker: Worker
    publisher: EventPublisher

    async def send(self, *updates: EngagementUpdate) -> None:
        for u in updates:
            key = u.transactions[0].engagement.registered_resident_identification if u.transactions else "x"
            await self.publisher.publish(self.settings.updates, key, u)

    async def send_raw(self, value: bytes, key: str) -> None:
        await self.publisher.send_raw(self.settings.updates_topic, key.encode(), value, [])

    async def wait_processed(self, count: int, dead: int = 0) -> None:
        """Until ``count`` records were handled and ``dead`` dead-lettered (repeats count too)."""

        async def done() -> bool:
            return self.worker.handled >= count and self.worker.dead_lettered >= dead

        await wait_for(done, 30)
        await asyncio.sleep(0.3)  # a surplus would show up now


def _settings(database_url: str, bootstrap: str, updates: str, changes: str) -> IndexSettings:
    return IndexSettings(
        database_url=database_url, kafka_bootstrap_servers=bootstrap, db_schema=schema_name(),
        updates_topic=updates, changes_topic=changes, consumer_group=f"g-{uuid.uuid4().hex[:8]}",
        db_pool_size=3,
    )


@pytest.fixture
async def index(database_url: str, kafka_bootstrap_servers: str) -> AsyncIterator[Running]:
    settings = _settings(database_url, kafka_bootstrap_servers, topic_name(), topic_name())
    async with _running(settings) as running:
        yield running


@asynccontextmanager
async def _running(settings: IndexSettings) -> AsyncIterator[Running]:
    async with open_worker(settings) as worker:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            yield Running(settings, worker, worker.publisher)
        finally:
            stop.set()
            await task


async def _read(bootstrap: str, topic: str, expected: int, seconds: float = 10,
                count: Callable[[bytes], int] = lambda value: 1) -> list[tuple[object, ...]]:
    """The records of ``topic`` until ``expected`` things were read (``count`` of a value: how
    many things it holds), then any surplus that arrives within half a second."""
    consumer = AIOKafkaConsumer(topic, **kafka_client_options(bootstrap), auto_offset_reset="earliest")
    await consumer.start()
    found: list[tuple[object, ...]] = []
    total = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and total < expected:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found += [(r.key, r.value, tuple(r.headers)) for r in records]
                total += sum(count(r.value) for r in records)
        if total == expected:  # anything more would be a surplus
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [(r.key, r.value, tuple(r.headers)) for r in records]
    finally:
        await consumer.stop()
    return found


async def _changes(running: Running, expected: int) -> list[IndexChange]:
    """The changes published, in order, from the change records (a patient's changes of a batch)."""
    raw = await _read(running.settings.kafka_bootstrap_servers, running.settings.changes_topic, expected,
                      count=lambda value: len(IndexChanges.FromString(value).changes))
    return changes_in(value for _, value, _ in raw)  # type: ignore[misc]


async def _contents(running: Running, p: str) -> list[str]:
    found = await running.worker.store.find(FindQuery(p, (DOMAIN,)))
    return [r.most_recent_content for r in found]


async def test_out_of_order_delivery_keeps_the_newest_content(index: Running) -> None:
    p = patient(31)
    ups = [update(tx(engagement(p, content=f"2026010{d}000000")), at=T0 + timedelta(minutes=d))
           for d in range(1, 6)]
    await index.send(ups[2], ups[4], ups[0], ups[3], ups[1])
    await index.wait_processed(5)
    assert await _contents(index, p) == ["20260105000000"]
    changes = await _changes(index, 2)
    assert [c.change for c in changes] == [IndexChange.CREATED, IndexChange.CONTENT_UPDATED]


async def test_a_stale_update_after_a_newer_one_is_ignored_and_not_published(index: Running) -> None:
    p = patient(32)
    await index.send(update(tx(engagement(p, content="20260110000000")), at=T0 + timedelta(hours=1)))
    await index.send(update(tx(engagement(p, content="20260101000000")), at=T0))
    await index.wait_processed(2)
    assert await _contents(index, p) == ["20260110000000"]
    assert len(await _changes(index, 1)) == 1


async def test_a_delete_then_a_late_older_update_does_not_resurrect(index: Running) -> None:
    p = patient(33)
    await index.send(
        update(tx(engagement(p)), at=T0),
        update(tx(engagement(p), delete=True), at=T0 + timedelta(minutes=10)),
        update(tx(engagement(p, content="20260101121500")), at=T0 + timedelta(minutes=5)),
    )
    await index.wait_processed(3)
    assert await _contents(index, p) == []
    changes = await _changes(index, 2)
    assert [c.change for c in changes] == [IndexChange.CREATED, IndexChange.DELETED]


async def test_a_duplicate_message_is_harmless(index: Running) -> None:
    p = patient(34)
    u = update(tx(engagement(p)))
    await index.send(u, u)
    await index.send_raw(u.SerializeToString(), p)
    await index.wait_processed(3)
    await asyncio.sleep(1)
    assert await _contents(index, p) == ["20260101120000"]
    assert len(await _changes(index, 1)) == 1
    assert index.worker.handled == 3


async def test_replay_from_offset_zero_rebuilds_exactly_the_live_index(
    index: Running, database_url: str, kafka_bootstrap_servers: str
) -> None:
    ups = []
    for n in range(60):
        p = patient(100 + n % 7)
        at = T0 + timedelta(seconds=(n * 37) % 50)  # out of order on purpose
        ups.append(update(tx(engagement(p, boi=f"d{n % 5}", content=f"2026010{n % 9 + 1}000000"),
                             delete=n % 11 == 0), at=at))
    await index.send(*ups, ups[3], ups[17])
    await index.wait_processed(62)
    live = await index.worker.store.records()

    settings = _settings(database_url, kafka_bootstrap_servers, index.settings.updates_topic, topic_name())
    async with _running(settings) as replay:
        await replay.wait_processed(62)
        rebuilt = await replay.worker.store.records()
    assert rebuilt == live
    assert len(live) > 10


@pytest.mark.parametrize(
    ("code", "bad"),
    [
        ("EI000", update()),
        ("EI001", update(tx(engagement(patient(41))), tx(engagement(patient(41))))),
        ("EI002", update(tx(engagement(patient(42), categorization="")))),
        ("EI003", update(tx(engagement(patient(43), boi="b" * 129)))),
        ("EI004", update(tx(engagement(patient(44), content="2026-01-01")))),
        ("EI005", update(tx(engagement("195001010000")))),
        ("EI006", update(tx(engagement(patient(46), logical_address="SE5565594230-NPOAGP")))),
        ("EI007", update(tx(engagement(patient(47), source_system="SE2321000016-7777")))),
    ],
)
async def test_each_invalid_message_is_dead_lettered_with_its_code_and_never_blocks(
    index: Running, code: str, bad: EngagementUpdate
) -> None:
    before, after = update(tx(engagement(patient(48)))), update(tx(engagement(patient(49))))
    await index.send(before, bad, after)
    await index.wait_processed(2, dead=1)
    assert await _contents(index, patient(48)) == await _contents(index, patient(49)) != []
    dlq = await _read(index.settings.kafka_bootstrap_servers, index.settings.updates.dead_letter, 1)
    (record,) = dlq
    assert header(record[2], DLQ_REASON) == code  # type: ignore[arg-type]
    assert record[1] == bad.SerializeToString()


async def test_a_producer_whose_clock_runs_ahead_cannot_pass_the_future_check(index: Running) -> None:
    """EI004's "event time not in the future" (5 minutes' skew) is judged against the broker's
    append time (the updates topic has ``message.timestamp.type=LogAppendTime``), not a record
    time the producer chose. A producer 50 minutes ahead that stamps its event and its record
    alike (the broker refuses a CreateTime over an hour ahead, but takes this one) is
    dead-lettered, so its version cannot outrank the correct updates of the next 50 minutes."""
    ahead = datetime.now(UTC) + timedelta(minutes=50)
    p = patient(52)
    bad = update(tx(engagement(p, content="20260101120000")), at=ahead)
    good = update(tx(engagement(p, content="20260102120000")), at=datetime.now(UTC))
    producer = AIOKafkaProducer(**kafka_client_options(index.settings.kafka_bootstrap_servers), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            index.settings.updates_topic, bad.SerializeToString(), key=p.encode(),
            timestamp_ms=int(ahead.timestamp() * 1000), headers=event_headers(bad),
        )
    finally:
        await producer.stop()
    await index.send(good)
    await index.wait_processed(1, dead=1)
    assert await _contents(index, p) == ["20260102120000"]  # the correct update is not outranked
    (record,) = await _read(index.settings.kafka_bootstrap_servers, index.settings.updates.dead_letter, 1)
    assert header(record[2], DLQ_REASON) == "EI004"  # type: ignore[arg-type]


async def test_new_data_is_visible_to_find_content_once_consumed(index: Running) -> None:
    """Visible without a restart or a refresh; how soon is `npo bench ingest`'s freshness figure
    (a wall-clock bound here would only measure this machine's load)."""
    await index.send(update(tx(engagement(patient(50)))))
    await index.wait_processed(1)  # the consumer is warm now
    p = patient(51)
    await index.send(update(tx(engagement(p))))
    await wait_for(lambda: _contents(index, p), 10, every=0.01)


async def test_changes_committed_but_not_published_before_a_crash_are_published_at_the_next_start(
    database_url: str, kafka_bootstrap_servers: str
) -> None:
    from npo_engagement import Rules, transactions_of
    from npo_index.events import outbox_messages
    from npo_index.store import IncomingEvent
    from npo_index.store_pg import PostgresIndexStore

    settings = _settings(database_url, kafka_bootstrap_servers, topic_name(), topic_name())
    store = await PostgresIndexStore.open(database_url, schema=settings.db_schema, max_size=1)
    u = update(tx(engagement(patient(52))), tx(engagement(patient(52), categorization="dia")))
    committed = await store.apply_batch([IncomingEvent(u.meta.event_id, transactions_of(u, Rules()))],
                                        outbox_messages)  # the commit; the process "dies" here
    await store.close()
    assert committed is not None

    async with _running(settings) as restarted:
        changes = await _changes(restarted, 2)
        assert await restarted.worker.store.pending_outbox() == []
    assert [m.key for m in committed.messages] == [patient(52)]  # one record: one patient
    assert [c.meta.event_id for c in changes] == [
        c.meta.event_id for c in changes_in(m.payload for m in committed.messages)
    ]
