"""Entry point of npo-audit: ``create_app()`` builds the HTTP application, ``run()`` serves it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from npo_platform.identity import TokenVerifier
from npo_platform.service import configure_process, create_service_app, freeze_startup_objects, serve
from npo_platform.web import mount_web

from .api import AuditServices, router
from .config import AuditSettings
from .consumer import build_worker, notify_channel, open_store
from .fhir_search import router as fhir_search_router
from .fhir_search_pages import PageTokens
from .queries import AuditQueries
from .register import RegisterKey
from .signing import load_verifier
from .statistics import router as statistics_router
from .stream import RecordHub

WEB_PAGES = Path(__file__).parent / "web"  # the browser views (see web/)


def create_app(settings: AuditSettings | None = None, token_verifier: TokenVerifier | None = None) -> FastAPI:
    """Build the application; reads settings but connects to nothing until it serves."""
    config = settings or AuditSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_store(config) as (pool, store):
            queries = AuditQueries(pool)
            hub = RecordHub(config.database_url, config.db_schema, notify_channel(config), queries)
            await hub.start()
            app.state.audit = AuditServices(config, store, queries, hub, RegisterKey.in_dir(config.keys_dir))
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
    app.include_router(statistics_router)
    app.include_router(fhir_search_router)
    mount_web(app, WEB_PAGES, service="audit", links={})
    return app


def run() -> None:
    """Console entry point ``npo-audit``: serve on the configured host and port."""
    config = AuditSettings()
    configure_process(config)
    serve(freeze_startup_objects(create_app(config)), config.http_host, config.http_port)
