"""Entry point of npo-query: ``create_app()`` builds the HTTP application, ``run()`` serves it."""

from __future__ import annotations

from importlib.metadata import version
from typing import Literal

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from .config import QuerySettings

DISTRIBUTION = "npo-query"


class Health(BaseModel):
    """Liveness: the process is up and answers HTTP."""

    status: Literal["ok"] = "ok"
    service: str


def create_app(settings: QuerySettings | None = None) -> FastAPI:
    """Build the application; reads settings but connects to nothing until it serves."""
    config = settings or QuerySettings()
    app = FastAPI(title="NPO patient overview query", version=version(DISTRIBUTION))
    app.state.settings = config

    # Liveness only, unauthenticated by design: orchestrators probe it without credentials,
    # and it reveals nothing but the service name.
    @app.get("/health", tags=["operations"])
    async def health() -> Health:
        return Health(service=config.service_name)

    return app


def run() -> None:
    """Console entry point ``npo-query``: serve on the configured host and port."""
    config = QuerySettings()
    uvicorn.run(create_app(config), host=config.http_host, port=config.http_port)
