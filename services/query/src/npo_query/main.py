"""Entry point of npo-query: ``create_app()`` builds the HTTP application, ``run()`` serves it."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from npo_platform.service import configure_process, create_service_app

from .config import QuerySettings


def create_app(settings: QuerySettings | None = None) -> FastAPI:
    """Build the application; reads settings but connects to nothing until it serves."""
    config = settings or QuerySettings()
    return create_service_app(config, title="NPO patient overview query", distribution="npo-query")


def run() -> None:
    """Console entry point ``npo-query``: serve on the configured host and port."""
    config = QuerySettings()
    configure_process(config)
    uvicorn.run(create_app(config), host=config.http_host, port=config.http_port)
