"""Wiring of npo-audit: ``create_app()`` builds the HTTP application, ``run()`` serves it; the
worker (both consumers and the periodic sweep) runs in it or alone (``npo audit worker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import TypeVar

import asyncpg
from fastapi import FastAPI
from google.protobuf.message import Message

from npo_platform.contracts import AccessEvent, ConsentEvent
from npo_platform.db import apply_migrations, create_pool
from npo_platform.guard import allow_bodies
from npo_platform.identity import TokenVerifier
from npo_platform.kafka import BatchHandler, EventConsumer, EventPublisher, Received
from npo_platform.kafka_admin import ensure_event_topics
from npo_platform.service import configure_process, create_service_app, freeze_startup_objects, serve
from npo_platform.topics import Topic
from npo_platform.web import mount_web

from .api import REGISTER_MAX_BODY, AuditServices, router
from .api_reads import router as reads_router
from .api_statistics import router as statistics_router
from .config import AuditSettings
from .domain_rules import RuleBook, RuleSettings
from .events import ingest_access, ingest_consent
from .fhir_search import router as fhir_search_router
from .fhir_search_pages import PageTokens
from .signing import RegisterKey, ensure_signing_key, load_verifier
from .store_pg import PostgresAuditStore
from .store_pg_live import RecordHub
from .store_pg_reads import PostgresReadLog
from .store_pg_search import AuditQueries

WEB_PAGES = Path(__file__).parent / "web"  # the browser views (see web/)
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



def create_app(settings: AuditSettings | None = None, token_verifier: TokenVerifier | None = None) -> FastAPI:
    """Build the application; reads settings but connects to nothing until it serves."""
    config = settings or AuditSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_store(config) as (pool, store):
            queries = AuditQueries(pool)
            hub = RecordHub(config.database_url, config.db_schema, notify_channel(config), queries)
            await hub.start()
            app.state.audit = AuditServices(config, store, queries, hub, RegisterKey.in_dir(config.keys_dir),
                                            PostgresReadLog(pool))
            app.state.checkpoint_verifier = load_verifier(config.keys_dir)
            app.state.fhir_page_tokens = PageTokens.in_dir(config.keys_dir, config.fhir_page_ttl_s)
            stop = asyncio.Event()
            worker = None
            if config.run_consumers:
                worker = asyncio.create_task((await build_worker(config, store)).run(stop))
            try:
                yield
            finally:
                stop.set()
                if worker is not None:
                    await worker
                await hub.stop()

    app = create_service_app(
        config, title="NPO access log", distribution="npo-audit", lifespan=lifespan,
        token_verifier=token_verifier,
    )
    app.include_router(router)
    allow_bodies(app, {"/audit/register": REGISTER_MAX_BODY})
    app.include_router(statistics_router)
    app.include_router(reads_router)
    app.include_router(fhir_search_router)
    mount_web(app, WEB_PAGES, service="audit", links={"index": config.index_url})
    return app


def run() -> None:
    """Console entry point ``npo-audit``: serve on the configured host and port."""
    config = AuditSettings()
    configure_process(config)
    serve(freeze_startup_objects(create_app(config)), config.http_host, config.http_port)
