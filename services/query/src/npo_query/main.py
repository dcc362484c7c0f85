"""Entry point of npo-query: ``create_app()`` builds the HTTP application, ``run()`` serves it.

Nothing connects at import or build time: the lifespan opens the pooled HTTP client, the
publisher, the routing store and the two consumers (consent events invalidate cached
decisions; index changes feed push subscriptions). Tests pass fakes for index and consent.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.abc
from fastapi import FastAPI

from npo_platform.contracts import ConsentEvent, IndexChanges
from npo_platform.db import apply_migrations, create_pool
from npo_platform.guard import allow_bodies
from npo_platform.identity import KeySettingError, TokenVerifier
from npo_platform.kafka import EventConsumer, EventPublisher
from npo_platform.kafka_admin import ensure_event_topics
from npo_platform.service import configure_process, create_service_app, freeze_startup_objects, serve
from npo_platform.web import mount_web
from npo_rivta.refusals import guard_soap_paths

from . import api, api_routing, fhir_api, riv
from .access_events import Auditor
from .cache import DecisionCache
from .clients import (
    ConsentClient,
    HttpConsentClient,
    HttpIndexClient,
    IndexClient,
    TokenSource,
    pooled_session,
)
from .config import QuerySettings
from .events import invalidating, pushing
from .producers import GuardedResolver, HttpProducerClient, ProducerClient, ProducerTokenSource
from .producers_riv import ByProtocol, RivProducerClient
from .push import Hub, PushService
from .routing import EndpointPolicy
from .service import OverviewService, RoutingService, Timeouts
from .store import RoutingStore
from .store_pg import PostgresRoutingStore
from .tokens import producer_token_source, signing_key, token_source

WEB_PAGES = Path(__file__).parent / "web"  # the browser views (see web/)


@dataclass
class Parts:
    """Collaborators a test or benchmark may supply instead of the configured ones."""

    index: IndexClient | None = None
    consent: ConsentClient | None = None
    producers: ProducerClient | None = None
    routing_store: RoutingStore | None = None
    publisher: EventPublisher | None = None
    tokens: TokenSource | None = None
    producer_tokens: ProducerTokenSource | None = None
    offset_reset: str = "latest"


def create_app(settings: QuerySettings | None = None, *, parts: Parts | None = None,
               token_verifier: TokenVerifier | None = None) -> FastAPI:
    """Build the application; reads settings but connects to nothing until it serves."""
    config = settings or QuerySettings()
    app = create_service_app(config, title="NPO patient overview query", distribution="npo-query",
                             lifespan=_lifespan(config, parts or Parts()),
                             token_verifier=token_verifier)
    for router in (api.router, api.push_router, api_routing.router, riv.router, fhir_api.router):
        app.include_router(router)
    allow_bodies(app, dict.fromkeys(api_routing.TABLE_PATHS, api_routing.TABLE_MAX_BODY))
    guard_soap_paths(app, riv.PATHS, config.riv_max_body_bytes)  # faults where SOAP is spoken
    browser_links = {"consent": config.consent_public_url or config.consent_url,
                     "index": config.index_public_url or config.index_url}  # the directory's names
    mount_web(app, WEB_PAGES, service="query", links=browser_links)
    return app


def _lifespan(settings: QuerySettings, parts: Parts) -> Callable[[FastAPI], Any]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await _wire(app, settings, parts, stack)
            yield

    return lifespan


async def _wire(app: FastAPI, settings: QuerySettings, parts: Parts,
                stack: contextlib.AsyncExitStack) -> None:
    http = _session(settings, stack)  # index and consent, apart from the producers' pool
    tokens = _tokens(parts.tokens or token_source(settings))
    if settings.ensure_topics:
        topics = [settings.access, settings.consent, settings.changes]
        await ensure_event_topics(settings.kafka_bootstrap_servers, topics)
    publisher = parts.publisher or await _publisher(settings, stack)
    store = parts.routing_store or await _store(settings, stack)
    policy = EndpointPolicy(allow_loopback=settings.allow_loopback_routes)
    routing = RoutingService(store, policy=policy)
    if settings.routing_file is not None:
        await routing.load_file(settings.routing_file)
    cache = DecisionCache(settings.decision_cache_ttl_s, settings.decision_cache_size)
    consent = parts.consent or HttpConsentClient(http, settings.consent_url,
                                                 settings.consent_timeout_s)
    index = parts.index or HttpIndexClient(http, settings.index_url, tokens,
                                           settings.index_timeout_s, settings.index_page_size)
    producers = parts.producers or _producers(
        settings, _session(settings, stack, GuardedResolver(policy)),
        parts.producer_tokens or producer_token_source(settings))
    timeouts = Timeouts(settings.producer_timeout_s, settings.overall_deadline_s)
    auditor = Auditor(publisher, settings.access, settings.service_name, settings.audit_timeout_s)
    overviews = OverviewService(index, consent, producers, routing.table, cache, auditor,
                                settings.consumer_system, timeouts)
    hub = Hub()
    app.state.query = api.QueryContext(overviews, PushService(consent, hub, settings.push_max_s))
    app.state.routing, app.state.decision_cache = routing, cache
    if settings.run_consumers:
        await _consume(settings, parts, publisher, cache, hub, stack)


def _producers(settings: QuerySettings, session: aiohttp.ClientSession,
               tokens: ProducerTokenSource) -> ProducerClient:
    """One port, one adapter per protocol the routing table names; each call carries a token
    bound to its producer's endpoint."""
    json = HttpProducerClient(
        session, tokens, connect_timeout_s=settings.producer_connect_timeout_s,
        page_size=settings.producer_page_size, max_pages=settings.max_pages_per_producer)
    rivta = RivProducerClient(session, tokens, connect_timeout_s=settings.producer_connect_timeout_s,
                              consumer_system=settings.consumer_system)
    return ByProtocol(json, rivta)


def _session(settings: QuerySettings, stack: contextlib.AsyncExitStack,
             resolver: aiohttp.abc.AbstractResolver | None = None) -> aiohttp.ClientSession:
    session = pooled_session(settings.max_connections, resolver)
    stack.push_async_callback(session.close)
    return session


def _tokens(source: TokenSource | str) -> TokenSource:
    return (lambda: source) if isinstance(source, str) else source


async def _publisher(settings: QuerySettings, stack: contextlib.AsyncExitStack) -> EventPublisher:
    publisher = EventPublisher(settings.kafka_bootstrap_servers, client_id=settings.service_name,
                               linger_ms=0)  # no added wait: concurrent reads batch by themselves
    await publisher.start()
    stack.push_async_callback(publisher.stop)
    return publisher


async def _store(settings: QuerySettings, stack: contextlib.AsyncExitStack) -> RoutingStore:
    await apply_migrations(settings.database_url, schema=settings.db_schema,
                           package="npo_query.migrations")
    pool = await create_pool(settings.database_url, schema=settings.db_schema,
                             max_size=settings.db_pool_size)
    stack.push_async_callback(pool.close)
    return PostgresRoutingStore(pool)


async def _consume(settings: QuerySettings, parts: Parts, publisher: EventPublisher,
                   cache: DecisionCache, hub: Hub, stack: contextlib.AsyncExitStack) -> None:
    # One group per replica: every replica must see every consent event and index change.
    replica = uuid.uuid4().hex[:12]
    consumers: list[EventConsumer[Any]] = [
        EventConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                      group_id=f"npo-query-decisions-{replica}", topic=settings.consent,
                      message_type=ConsentEvent, handler=invalidating(cache),
                      publisher=publisher, auto_offset_reset=parts.offset_reset),
        EventConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                      group_id=f"npo-query-push-{replica}", topic=settings.changes,
                      message_type=IndexChanges, handler=pushing(hub), publisher=publisher,
                      auto_offset_reset=parts.offset_reset),
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(c.run(stop)) for c in consumers]

    async def _stop() -> None:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    stack.push_async_callback(_stop)


def served_app() -> FastAPI:
    """The app of one server process (uvicorn's factory, in every worker): telemetry, then app."""
    config = QuerySettings()
    configure_process(config)
    return freeze_startup_objects(create_app(config))


def run() -> None:
    """Console entry point ``npo-query``: serve on the configured host and port.

    ``QUERY_WORKERS`` server processes share the port (uvicorn workers). Each is a whole
    replica: its own decision cache, emptied by its own consent-event consumer group, its own
    push subscriptions fed by its own index-change group, its own routing snapshot (reloaded
    every 5 s, at once on the replica that took an admin change) and its own publisher.
    """
    config = QuerySettings()
    try:  # before any server process: one line naming the setting, not a worker's traceback
        signing_key(config)
    except KeySettingError as error:
        raise SystemExit(f"npo-query cannot start: {error}") from None
    serve("npo_query.main:served_app", config.http_host, config.http_port, config.workers)
