"""Entry point of npo-index: ``create_app()`` builds the HTTP application, ``run()`` serves it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import FastAPI

from npo_engagement import Rules
from npo_platform.identity import TokenVerifier
from npo_platform.kafka import EventPublisher
from npo_platform.service import configure_process, create_service_app, freeze_startup_objects, serve
from npo_platform.web import mount_web
from npo_producer import EngagementProducer

from .api import router
from .config import IndexSettings
from .consumer import open_worker
from .directory import load_directory
from .directory import router as directory_router
from .ingest import Notifications
from .riv import router as riv_router
from .store import IndexStore

WEB_PAGES = Path(__file__).parent / "web"  # the browser views (see web/)


def create_app(
    settings: IndexSettings | None = None,
    *,
    store: IndexStore | None = None,
    publisher: EventPublisher | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    """Build the application; connects to nothing until it serves.

    With ``store`` and ``publisher`` given (tests), the app uses them and starts no consumer;
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
    if store is not None and publisher is not None:
        _attach(app, config, store, publisher)
    app.include_router(directory_router)
    app.state.directory = load_directory(config.directory_file) if config.directory_file else None
    mount_web(app, WEB_PAGES, service="index", links={"audit": config.audit_url})
    return app


def _attach(app: FastAPI, settings: IndexSettings, store: IndexStore, publisher: EventPublisher) -> None:
    rules = Rules(own_addresses=settings.own_addresses)
    factory: Callable[[str], EngagementProducer] = lambda sub: EngagementProducer(  # noqa: E731
        publisher, sub, topic=settings.updates, rules=rules
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
            _attach(app, settings, worker.store, worker.publisher)
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
