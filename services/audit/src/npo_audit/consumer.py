"""The worker: consumes access and consent events into the log until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import time
from typing import TypeVar

import asyncpg
from google.protobuf.message import Message

from npo_platform.contracts import AccessEvent, ConsentEvent
from npo_platform.db import apply_migrations, create_pool
from npo_platform.kafka import BatchHandler, EventConsumer, EventPublisher, Received
from npo_platform.kafka_admin import ensure_event_topics
from npo_platform.topics import Topic

from .config import AuditSettings
from .handlers import ingest_access, ingest_consent
from .rules import RuleBook, RuleSettings
from .signing import ensure_signing_key
from .store import PostgresAuditStore

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)
NOTIFY_CHANNEL_SUFFIX = "_records"


def rulebook(settings: AuditSettings) -> RuleBook:
    return RuleBook(RuleSettings(
        office_start=time(settings.office_start_hour), office_end=time(settings.office_end_hour),
        patients_per_hour=settings.patients_per_hour,
        refused_attempts_per_hour=settings.refused_attempts_per_hour,
    ))


def notify_channel(settings: AuditSettings) -> str:
    return settings.db_schema + NOTIFY_CHANNEL_SUFFIX


@asynccontextmanager
async def open_store(settings: AuditSettings) -> AsyncIterator[tuple[asyncpg.Pool, PostgresAuditStore]]:
    """A migrated pool on the audit schema and the store writing to it."""
    pool = await create_pool(settings.database_url, schema=settings.db_schema, max_size=8)
    try:
        await apply_migrations(pool, schema=settings.db_schema, package="npo_audit.migrations")
        signer = ensure_signing_key(settings.keys_dir)
        channel = notify_channel(settings)
        yield pool, PostgresAuditStore(pool, signer, rulebook(settings), notify_channel=channel)
    finally:
        await pool.close()


@dataclass
class Worker:
    """Both consumers over one store and one dead-letter publisher, and the periodic sweep."""

    access: EventConsumer[AccessEvent]
    consent: EventConsumer[ConsentEvent]
    publisher: EventPublisher
    store: PostgresAuditStore
    settings: AuditSettings

    async def run(self, stop: asyncio.Event) -> None:
        await self.publisher.start()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.access.run(stop))
                tasks.create_task(self.consent.run(stop))
                tasks.create_task(self._sweep(stop))
        finally:
            await self.publisher.stop()

    async def _sweep(self, stop: asyncio.Event) -> None:
        """The windowed rules (many patients per hour, repeated refused attempts), over what
        every writer stored since the last sweep."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.sweep_interval_s)
            try:
                await self.store.sweep(self.settings.patients_per_hour,
                                       self.settings.refused_attempts_per_hour)
            except (asyncpg.PostgresError, OSError):
                log.exception("sample-check sweep failed; retried at the next interval")


async def build_worker(settings: AuditSettings, store: PostgresAuditStore) -> Worker:
    await ensure_event_topics(
        settings.kafka_bootstrap_servers, [settings.access, settings.consent],
        partitions=settings.topic_partitions,
    )
    publisher = EventPublisher(settings.kafka_bootstrap_servers, client_id=settings.service_name)

    async def on_access(batch: Sequence[Received[AccessEvent]]) -> None:
        await ingest_access(store, batch)

    async def on_consent(batch: Sequence[Received[ConsentEvent]]) -> None:
        await ingest_consent(store, batch)

    return Worker(
        _consumer(settings, publisher, settings.access, AccessEvent, on_access),
        _consumer(settings, publisher, settings.consent, ConsentEvent, on_consent),
        publisher, store, settings,
    )


def _consumer(
    settings: AuditSettings, publisher: EventPublisher, topic: Topic, message_type: type[M],
    handler: BatchHandler[M],
) -> EventConsumer[M]:
    return EventConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=settings.consumer_group,
        topic=topic, message_type=message_type, handler=handler, publisher=publisher,
        max_batch=settings.max_batch,
    )


async def run_worker(settings: AuditSettings, stop: asyncio.Event) -> None:
    """The standalone worker process (`npo audit worker`)."""
    async with open_store(settings) as (_, store):
        worker = await build_worker(settings, store)
        log.info("audit worker consuming as group %s", settings.consumer_group)
        await worker.run(stop)
