"""Entry point of npo-audit: ``create_app()`` builds the HTTP application, ``run()`` serves it."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from npo_platform.service import configure_process, create_service_app

from .config import AuditSettings


def create_app(settings: AuditSettings | None = None) -> FastAPI:
    """Build the application; reads settings but connects to nothing until it serves."""
    config = settings or AuditSettings()
    return create_service_app(config, title="NPO access log", distribution="npo-audit")


def run() -> None:
    """Console entry point ``npo-audit``: serve on the configured host and port."""
    config = AuditSettings()
    configure_process(config)
    uvicorn.run(create_app(config), host=config.http_host, port=config.http_port)
