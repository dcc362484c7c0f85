"""Wiring of npo-consent: ``create_app()`` builds the HTTP application, ``run()`` serves it.

Nothing connects at import or build time; the lifespan opens the database (migrating the
``consent`` schema), creates the topics it uses, and starts the outbox relay, the access-event
consumer and the expiry sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from fastapi import FastAPI

from npo_platform.contracts import AccessEvent
from npo_platform.guard import allow_bodies
from npo_platform.kafka import BatchPublisher, EventConsumer, EventPublisher
from npo_platform.kafka_admin import ensure_event_topics
from npo_platform.outbox import OutboxRelay
from npo_platform.service import configure_process, create_service_app, freeze_startup_objects, serve
from npo_platform.topics import ACCESS_EVENTS, CONSENT_EVENTS, Topic

from .api import DECISION_MAX_BODY, router
from .config import ConsentSettings
from .events import ConsentOutbox, access_handler
from .service import Clock, ConsentService, utc_now
from .store_pg import open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsentTopics:
    """The topics the service uses (tests pass their own)."""

    access_events: Topic = ACCESS_EVENTS
    consent_events: Topic = CONSENT_EVENTS


@dataclass
class Runtime:
    """What the lifespan started, on ``app.state.runtime`` for health checks and tests."""

    service: ConsentService
    relay: OutboxRelay | None = None
    consumer: EventConsumer[AccessEvent] | None = None


def create_app(
    settings: ConsentSettings | None = None,
    *,
    topics: ConsentTopics | None = None,
    clock: Clock = utc_now,
) -> FastAPI:
    """Build the application; reads settings but connects to nothing until it serves."""
    config = settings or ConsentSettings()
    wanted = topics or ConsentTopics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await open_store(config.database_url, config.db_schema, config.db_pool_size)
        window = timedelta(minutes=config.emergency_window_minutes)
        service = ConsentService(store, clock=clock, emergency_window=window)
        app.state.consent_service = service
        app.state.runtime = Runtime(service)
        try:
            if not config.background:
                yield
                return
            async with _background(config, wanted, service) as runtime:
                app.state.runtime = runtime
                yield
        finally:
            await store.close()

    app = create_service_app(
        config, title="NPO consent and access decisions", distribution="npo-consent", lifespan=lifespan
    )
    app.include_router(router)
    allow_bodies(app, {"/v1/decisions": DECISION_MAX_BODY})
    return app


@contextlib.asynccontextmanager
async def _background(
    config: ConsentSettings, topics: ConsentTopics, service: ConsentService
) -> AsyncIterator[Runtime]:
    bootstrap = config.kafka_bootstrap_servers
    await ensure_event_topics(bootstrap, [topics.access_events, topics.consent_events])
    publisher = EventPublisher(bootstrap, client_id=config.service_name)  # dead letters
    await publisher.start()
    events = BatchPublisher(bootstrap, client_id=f"{config.service_name}-events")
    await events.start()
    relay = OutboxRelay(ConsentOutbox(service.store), events, topics.consent_events,
                        interval_s=config.relay_interval_s)
    service.on_change = relay.wake
    consumer = EventConsumer(
        bootstrap_servers=bootstrap, group_id=config.consumer_group, topic=topics.access_events,
        message_type=AccessEvent, handler=access_handler(service), publisher=publisher,
    )
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(relay.run(stop), name="consent-outbox-relay"),
        asyncio.create_task(consumer.run(stop), name="consent-access-consumer"),
        asyncio.create_task(expire_periodically(service, stop, config.expiry_interval_s)),
    ]
    try:
        yield Runtime(service, relay, consumer)
    finally:
        stop.set()
        service.on_change = None
        await asyncio.gather(*tasks, return_exceptions=True)
        await events.stop()
        await publisher.stop()


async def expire_periodically(service: ConsentService, stop: asyncio.Event, interval_s: float) -> None:
    """Announce expired consents, lifts and relations (and other windows) every ``interval_s``."""
    while not stop.is_set():
        try:
            while await service.expire():
                pass
        except Exception:
            log.exception("expiry sweep failed; retrying next round")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


def served_app() -> FastAPI:
    """The app of one server process (uvicorn's factory, in every worker): telemetry, then app,
    then start-up's objects frozen (a full collection over them was the p99 of
    ``npo bench consent``)."""
    config = ConsentSettings()
    configure_process(config)
    return freeze_startup_objects(create_app(config))


def run() -> None:
    """Console entry point ``npo-consent``: serve on the configured host and port.

    ``CONSENT_WORKERS`` server processes share the port (uvicorn workers), each built by
    ``served_app``.
    """
    config = ConsentSettings()
    serve("npo_consent.main:served_app", config.http_host, config.http_port, config.workers)
