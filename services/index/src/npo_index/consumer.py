"""The ingest worker: topics, store, outbox relay and the platform consumer wired together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

from npo_engagement import Rules
from npo_platform.contracts import EngagementUpdate, IndexChanges
from npo_platform.kafka import BatchPublisher, EventConsumer, EventPublisher, RetryPolicy
from npo_platform.kafka_admin import ensure_event_topics
from npo_platform.outbox import OutboxRelay
from npo_platform.service import tune_collector

from .config import IndexSettings
from .handlers import IngestHandler
from .notify import described, notifiers
from .store_pg import PostgresIndexStore

log = logging.getLogger(__name__)


@dataclass
class Worker:
    """What a running index process holds; ``run(stop)`` ingests until stopped.

    ``consumers`` are members of the same group in one process: each gets its own partitions,
    so one partition's database round trip overlaps another's validation and publication.
    """

    store: PostgresIndexStore
    publisher: EventPublisher
    relay: OutboxRelay
    consumers: list[EventConsumer[EngagementUpdate]]
    notifiers: list[EventConsumer[IndexChanges]] = field(default_factory=list)  # notify.py

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        async with asyncio.TaskGroup() as group:
            group.create_task(self.relay.run(stop))
            for consumer in self.consumers:
                group.create_task(consumer.run(stop))
            for notifier in self.notifiers:
                group.create_task(notifier.run(stop))

    @property
    def dead_lettered(self) -> int:
        return sum(c.stats.dead_lettered for c in self.consumers)

    @property
    def handled(self) -> int:
        return sum(c.stats.handled for c in self.consumers)


async def ensure_index_topics(settings: IndexSettings, *, partitions: int = 3) -> None:
    """The updates and change topics with their dead letters, where missing; the updates topic
    is stamped by the broker on append (``LogAppendTime``, the time EI004 judges against)."""
    await ensure_event_topics(
        settings.kafka_bootstrap_servers, [settings.updates, settings.changes], partitions=partitions
    )


@asynccontextmanager
async def open_worker(settings: IndexSettings) -> AsyncIterator[Worker]:
    """Create topics, migrate, publish what a crash left in the outbox, then hand out the worker."""
    await ensure_index_topics(settings)
    store = await PostgresIndexStore.open(
        settings.database_url, schema=settings.db_schema, max_size=settings.db_pool_size
    )
    publisher = EventPublisher(settings.kafka_bootstrap_servers, client_id=settings.service_name)
    sender = BatchPublisher(settings.kafka_bootstrap_servers, client_id=f"{settings.service_name}-changes")
    await publisher.start()
    await sender.start()
    http = httpx.AsyncClient(timeout=settings.riv_notify_timeout_s)
    try:
        relay = OutboxRelay(store, sender, settings.changes, interval_s=None)  # fed by the ingest
        drained = await relay.flush()
        if drained:
            log.info("published %d index changes left in the outbox", drained)
        handler = IngestHandler(store, relay, Rules(own_addresses=settings.own_addresses))
        consumers = [
            EventConsumer(
                bootstrap_servers=settings.kafka_bootstrap_servers,
                group_id=settings.consumer_group,
                topic=settings.updates,
                message_type=EngagementUpdate,
                handler=handler,
                publisher=publisher,
                max_batch=settings.max_batch,
                # A database or broker outage must not dead-letter valid updates quickly:
                # about a minute of backoff before the platform gives up on a record.
                retry=RetryPolicy(attempts=12, initial_backoff_s=0.2, max_backoff_s=10.0),
            )
            for _ in range(settings.consumers)
        ]
        subscribers = notifiers(settings, publisher, http)
        log.info("notifying subscribers: %s", described(settings.riv_subscribers))
        yield Worker(store, publisher, relay, consumers, subscribers)
    finally:
        await http.aclose()
        await sender.stop()
        await publisher.stop()
        await store.close()


async def run_worker(settings: IndexSettings, stop: asyncio.Event | None = None) -> None:
    async with open_worker(settings) as worker:
        tune_collector()
        await worker.run(stop)
