"""Wiring of npo-index: ``create_app()`` builds the HTTP application, ``run()`` serves it;
``open_worker`` wires the ingest (topics, store, publishers, outbox relay, consumers, notifiers)
that the HTTP process runs in the background or ``npo-index-worker`` (cli.py) runs alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi import FastAPI

from npo_engagement import Rules
from npo_platform.contracts import EngagementUpdate, IndexChanges
from npo_platform.guard import allow_bodies
from npo_platform.identity import TokenVerifier
from npo_platform.kafka import BatchPublisher, EventConsumer, EventPublisher, RetryPolicy
from npo_platform.kafka_admin import ensure_event_topics
from npo_platform.outbox import OutboxRelay
from npo_platform.service import (
    configure_process,
    create_service_app,
    freeze_startup_objects,
    serve,
    tune_collector,
)
from npo_platform.web import mount_web
from npo_producer import EngagementProducer
from npo_rivta.refusals import guard_soap_paths

from . import riv
from .api import INGEST_MAX_BODY, router
from .config import IndexSettings
from .directory import load_directory
from .events import IngestHandler
from .riv import router as riv_router
from .riv_notify import described, notifiers
from .service import Notifications
from .store import IndexStore
from .store_pg import PostgresIndexStore

WEB_PAGES = Path(__file__).parent / "web"  # the browser views (see web/)
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
    updates: BatchPublisher | None = None  # the producers' requests (Update, JSON), whole

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
    updates = BatchPublisher(settings.kafka_bootstrap_servers, client_id=f"{settings.service_name}-updates")
    await publisher.start()
    await sender.start()
    await updates.start()
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
        yield Worker(store, publisher, relay, consumers, subscribers, updates)
    finally:
        await http.aclose()
        await updates.stop()
        await sender.stop()
        await publisher.stop()
        await store.close()


async def run_worker(settings: IndexSettings, stop: asyncio.Event | None = None) -> None:
    async with open_worker(settings) as worker:
        tune_collector()
        await worker.run(stop)


def create_app(
    settings: IndexSettings | None = None,
    *,
    store: IndexStore | None = None,
    publisher: EventPublisher | None = None,
    updates: BatchPublisher | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    """Build the application; connects to nothing until it serves.

    With ``store`` and ``publisher`` given (tests), the app uses them (and ``updates`` for the
    producers' requests, as ``open_worker`` makes it, when given) and starts no consumer;
    otherwise its lifespan opens the PostgreSQL store, the publisher and (``run_consumer``) the
    ingest consumer in the background.
    """
    config = settings or IndexSettings()
    lifespan = None if store is not None else _lifespan(config)
    app = create_service_app(
        config, title="NPO engagement index", distribution="npo-index",
        lifespan=lifespan, token_verifier=token_verifier,
    )
    app.include_router(router)
    app.include_router(riv_router)
    # A producer's whole batch, and the SOAP front end's messages; its refusals are SOAP faults.
    allow_bodies(app, {"/engagement-updates": INGEST_MAX_BODY})
    guard_soap_paths(app, riv.PATHS, config.riv_max_body_bytes)
    if store is not None and publisher is not None:
        _attach(app, config, store, publisher, updates)
    app.state.directory = load_directory(config.directory_file) if config.directory_file else None
    mount_web(app, WEB_PAGES, service="index", links={"audit": config.audit_url})
    return app


def _attach(app: FastAPI, settings: IndexSettings, store: IndexStore, publisher: EventPublisher,
            updates: BatchPublisher | None = None) -> None:
    rules = Rules(own_addresses=settings.own_addresses)
    factory: Callable[[str], EngagementProducer] = lambda sub: EngagementProducer(  # noqa: E731
        updates or publisher, sub, topic=settings.updates, rules=rules
    )
    app.state.store = store
    app.state.producer_factory = factory
    app.state.rules = rules
    app.state.notifications = Notifications(publisher, settings.updates, rules,
                                            settings.riv_logical_address)


def _lifespan(settings: IndexSettings) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_worker(settings) as worker:
            _attach(app, settings, worker.store, worker.publisher, worker.updates)
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop)) if settings.run_consumer else None
            try:
                yield
            finally:
                stop.set()
                if task is not None:
                    await task

    return lifespan


def run() -> None:
    """Console entry point ``npo-index``: serve on the configured host and port."""
    config = IndexSettings()
    configure_process(config)
    serve(freeze_startup_objects(create_app(config)), config.http_host, config.http_port)
