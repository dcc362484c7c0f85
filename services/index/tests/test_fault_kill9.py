"""Fault test: kill -9 the index worker while it ingests 200,000 updates, start it again.

The final index must equal the expected state exactly: the reference model (the in-memory store
folding the same messages in the same per-patient order) gives every row, tombstones and index
times included. Every expected IndexChange must have been published (duplicates allowed: they
carry the same event id). INDEX_FAULT_TEST_UPDATES sets the size (default 200,000).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from index_helpers import T0, changes_in, engagement, patient, schema_name, topic_name, tx, update, wait_for

from npo_engagement import Rules, transactions_of
from npo_index.config import IndexSettings
from npo_index.events import outbox_messages
from npo_index.main import ensure_index_topics
from npo_index.store import IncomingEvent
from npo_index.store_memory import InMemoryIndexStore
from npo_index.store_pg import PostgresIndexStore
from npo_platform.contracts import EngagementUpdate
from npo_platform.kafka import EventPublisher
from npo_platform.kafka_admin import GroupProgress
from npo_platform.settings import kafka_client_options

pytestmark = pytest.mark.integration
UPDATES = int(os.environ.get("INDEX_FAULT_TEST_UPDATES", "200000"))
KEYS_PER_PATIENT = 10
CATEGORIZATIONS = ("dia", "upp", "voo", "fun-fun", "pad-pad")


def _messages(count: int, rng: random.Random) -> list[EngagementUpdate]:
    """Per-patient messages of 10 transactions, event times out of order, ~10% deletes."""
    patients = [patient(n) for n in range(max(1, count // 100))]
    messages = []
    for _ in range(count // KEYS_PER_PATIENT):
        p = rng.choice(patients)
        at = T0 + timedelta(seconds=rng.randrange(86_400))
        content = (at - timedelta(minutes=rng.randrange(600))).strftime("%Y%m%d%H%M%S")
        txs = [tx(engagement(p, categorization=CATEGORIZATIONS[k % 5], boi=f"doc-{k // 5}", content=content),
                  delete=rng.random() < 0.1) for k in range(KEYS_PER_PATIENT)]
        messages.append(update(*txs, at=at))
    return messages


def _patient_of(message: EngagementUpdate) -> str:
    return message.transactions[0].engagement.registered_resident_identification


def _start_worker(settings: IndexSettings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "INDEX_UPDATES_TOPIC": settings.updates_topic,
        "INDEX_CHANGES_TOPIC": settings.changes_topic,
        "INDEX_DB_SCHEMA": settings.db_schema,
        "INDEX_CONSUMER_GROUP": settings.consumer_group,
        "NPO_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "npo_index"], env=env)


async def _count(conn: asyncpg.Connection, schema: str, table: str) -> int:
    try:
        value: int = await conn.fetchval(f'SELECT count(*) FROM "{schema}".{table}')  # noqa: S608
        return value
    except asyncpg.UndefinedTableError:
        return 0


async def _published_ids(bootstrap: str, topic: str, expected: set[str]) -> tuple[set[str], int]:
    consumer = AIOKafkaConsumer(topic, **kafka_client_options(bootstrap), auto_offset_reset="earliest")
    await consumer.start()
    seen: set[str] = set()
    total = 0
    try:
        async with asyncio.timeout(120):
            while not expected <= seen:
                for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                    total += len(records)
                    seen.update(c.meta.event_id for c in changes_in(r.value for r in records))
    finally:
        await consumer.stop()
    return seen, total


async def test_kill_9_during_ingest_then_restart_ends_in_the_exact_expected_index(
    database_url: str, kafka_bootstrap_servers: str
) -> None:
    began = time.monotonic()
    rng = random.Random(20261128)
    messages = _messages(UPDATES, rng)
    messages += rng.sample(messages, len(messages) // 100)  # producer retries: exact duplicates
    settings = IndexSettings(
        database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap_servers,
        updates_topic=topic_name(), changes_topic=topic_name(), db_schema=schema_name(),
        consumer_group=f"g-{uuid.uuid4().hex[:8]}",
    )
    await ensure_index_topics(settings)

    expected = InMemoryIndexStore()
    changes = []
    for m in messages:
        batch = await expected.apply_batch(
            [IncomingEvent(m.meta.event_id, transactions_of(m, Rules()))], outbox_messages
        )
        changes += batch.messages if batch else []

    publisher = EventPublisher(kafka_bootstrap_servers, linger_ms=20)
    await publisher.start()
    try:
        acks = [await publisher.send(settings.updates, _patient_of(m), m) for m in messages]
        await asyncio.gather(*acks)
    finally:
        await publisher.stop()

    prepared = time.monotonic()
    total = len(messages)
    conn = await asyncpg.connect(database_url)
    progress = GroupProgress(kafka_bootstrap_servers, settings.consumer_group, settings.updates_topic)
    worker = _start_worker(settings)
    try:
        async with progress:  # committed offsets: records whose batch was committed to the index
            await wait_for(_reached(progress, total // 3), 120, every=0.02)
            os.kill(worker.pid, signal.SIGKILL)
            assert worker.wait(10) == -signal.SIGKILL
            at_kill = await progress.committed()
            assert at_kill < total, "the worker must be killed in the middle of the ingest"

            worker = _start_worker(settings)
            await wait_for(_reached(progress, total), 300, every=0.1)
        await wait_for(_outbox_empty(conn, settings.db_schema), 60)
    finally:
        worker.kill()
        worker.wait(10)
        await conn.close()
    elapsed = time.monotonic() - prepared

    store = await PostgresIndexStore.open(database_url, schema=settings.db_schema, max_size=1)
    try:
        actual = await store.records()
    finally:
        await store.close()
    wanted = await expected.records()
    assert len(actual) == len(wanted)
    assert actual == wanted

    expected_ids = {c.meta.event_id for c in changes_in(m.payload for m in changes)}
    seen, published = await _published_ids(kafka_bootstrap_servers, settings.changes_topic, expected_ids)
    assert seen == expected_ids
    print(f"\n{total} messages / {sum(len(m.transactions) for m in messages)} updates; killed at "
          f"{at_kill}/{total} committed; {elapsed:.1f} s to the final state; {len(wanted)} rows; "
          f"{len(expected_ids)} changes, {published - len(expected_ids)} republished after the kill; "
          f"test {time.monotonic() - began:.1f} s (preparing {prepared - began:.1f} s)")


def _reached(progress: GroupProgress, target: int) -> Callable[[], Awaitable[bool]]:
    async def reached() -> bool:
        return await progress.committed() >= target

    return reached


def _outbox_empty(conn: asyncpg.Connection, schema: str) -> Callable[[], Awaitable[bool]]:
    async def empty() -> bool:
        return await _count(conn, schema, "outbox") == 0

    return empty
