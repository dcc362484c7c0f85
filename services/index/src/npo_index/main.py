"""Entry point of npo-index: ``create_app()`` builds the HTTP application, ``run()`` serves it."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from npo_platform.service import configure_process, create_service_app

from .config import IndexSettings


def create_app(settings: IndexSettings | None = None) -> FastAPI:
    """Build the application; reads settings but connects to nothing until it serves."""
    config = settings or IndexSettings()
    return create_service_app(config, title="NPO engagement index", distribution="npo-index")


def run() -> None:
    """Console entry point ``npo-index``: serve on the configured host and port."""
    config = IndexSettings()
    configure_process(config)
    uvicorn.run(create_app(config), host=config.http_host, port=config.http_port)
