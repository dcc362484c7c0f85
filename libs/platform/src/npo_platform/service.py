"""What every service's HTTP application has: problem details, token verifier, tracing, /health."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from importlib.metadata import version
from typing import Literal

import uvicorn
import uvloop
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel

from npo_platform.guard import RequestGuard
from npo_platform.identity import Audience, CachingTokenVerifier, TokenVerifier, load_token_verifier
from npo_platform.problems import install_problem_handlers
from npo_platform.settings import PlatformSettings
from npo_platform.telemetry import configure_logging, configure_tracing, server_telemetry

log = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class Health(BaseModel):
    """Liveness: the process is up and answers HTTP."""

    status: Literal["ok"] = "ok"
    service: str


def create_service_app(
    settings: PlatformSettings,
    *,
    title: str,
    distribution: str,
    lifespan: Lifespan | None = None,
    token_verifier: TokenVerifier | None = None,
    token_audience: Audience | None = None,
) -> FastAPI:
    """A FastAPI app with the platform's conventions; the service adds its routers.

    ``token_verifier`` defaults to the configured public key (NPO_JWT_PUBLIC_KEY_PATH, else
    the local issuer's key in the state dir); without one every authenticated route fails.
    ``token_audience`` names the audience a request's token must carry when it is not the
    verifier's (routes answering tokens bound to them). Every request passes the request guard
    (authentication before a body is read, rate limits: ``npo_platform.guard``); a body is at
    most ``settings.max_body_bytes`` unless ``guard.allow_bodies`` says more for its path (413).
    """
    app = FastAPI(title=title, version=version(distribution), lifespan=lifespan,
                  telemetry=server_telemetry(excluded_paths=("/health",)))
    app.state.settings = settings
    verifier = token_verifier or _configured_verifier(settings)
    app.state.token_verifier = CachingTokenVerifier(verifier) if verifier else None
    app.state.token_audience = token_audience
    install_problem_handlers(app)
    app.add_middleware(RequestGuard, max_body=settings.max_body_bytes,
                       per_user=settings.rate_limit_user, per_client=settings.rate_limit_client)
    app.add_middleware(  # outermost: preflights and refusals alike carry the CORS headers
        CORSMiddleware, allow_origin_regex=settings.web_origin_regex, allow_credentials=False,
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        expose_headers=["Location", "Retry-After"], max_age=600,
    )

    # Liveness only, unauthenticated by design: orchestrators probe it without credentials,
    # and it reveals nothing but the service name.
    @app.get("/health", tags=["operations"])
    async def health() -> Health:
        return Health(service=settings.service_name)

    return app


def configure_process(settings: PlatformSettings) -> None:
    """Process-wide telemetry, once, from a service's entry point (never at import time)."""
    configure_logging(settings.service_name, settings.log_level)
    configure_tracing(settings.service_name, otlp_endpoint=settings.otel_exporter_otlp_endpoint)


SHUTDOWN_GRACE_S = 10  # open event streams are cut this long into a shutdown


def serve(app: FastAPI | str, host: str, port: int, workers: int = 1) -> None:
    """A service's HTTP server in this process, until it is told to stop.

    ``app`` is the application, or the import path of a factory (``"pkg.main:served_app"``)
    that each of ``workers`` server processes calls to build its own.
    """
    # log_config=None: uvicorn's own loggers (its access log too) write through the platform's
    # JSON handler, which masks personal identity numbers (telemetry.configure_logging).
    uvicorn.run(app, factory=isinstance(app, str), host=host, port=port, workers=workers,
                timeout_graceful_shutdown=SHUTDOWN_GRACE_S, log_config=None)


def run_until_signalled(work: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``work(stop)`` in this process until SIGTERM or SIGINT sets ``stop`` (a worker
    without HTTP), on uvloop, the loop uvicorn serves the services on."""

    async def until_signalled() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await work(stop)

    uvloop.run(until_signalled())


def freeze_startup_objects(app: FastAPI) -> FastAPI:
    """``tune_collector()`` for a served app (the factory ``serve`` gives every worker)."""
    tune_collector()
    return app


YOUNG_THRESHOLD = 50_000


def tune_collector(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Garbage collection for a long-running service process, once start-up is done.

    1. Freeze what start-up built (modules, routes, schemas): a full collection over all of it
       is a pause every request in flight waits for.
    2. Collect the young generation every ``young_threshold`` allocations instead of every 700.
       With the default, the objects of work in flight (a consumer's batch of thousands of
       events, 200 concurrent overviews) live through many young collections, are promoted,
       and trigger full collections over everything alive. Less CPU per update and per
       overview in ``npo bench ingest|query`` (docs/performance/code-notes.md).

    Cyclic garbage is still collected, a little later; the memory held meanwhile is a young
    generation of at most ``young_threshold`` container objects.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, 10, 10)


def _configured_verifier(settings: PlatformSettings) -> TokenVerifier | None:
    try:
        return load_token_verifier(settings)
    except FileNotFoundError:
        log.warning("no token public key found: authenticated routes will refuse every request")
        return None


async def no_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """A lifespan that does nothing (for services with no background work yet)."""
    yield
