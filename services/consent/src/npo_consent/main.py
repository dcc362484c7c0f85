"""Entry point of npo-consent: ``create_app()`` builds the HTTP application, ``run()`` serves it."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from npo_platform.service import configure_process, create_service_app

from .config import ConsentSettings


def create_app(settings: ConsentSettings | None = None) -> FastAPI:
    """Build the application; reads settings but connects to nothing until it serves."""
    config = settings or ConsentSettings()
    return create_service_app(config, title="NPO consent and access decisions", distribution="npo-consent")


def run() -> None:
    """Console entry point ``npo-consent``: serve on the configured host and port."""
    config = ConsentSettings()
    configure_process(config)
    uvicorn.run(create_app(config), host=config.http_host, port=config.http_port)
