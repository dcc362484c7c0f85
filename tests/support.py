"""Helpers for the cross-service tests: serve an ASGI app under a real uvicorn on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


@asynccontextmanager
async def serve(app: Any, **options: Any) -> AsyncIterator[str]:
    """``options`` override the uvicorn config (default: quiet, a free port on localhost)."""
    config: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "log_level": "warning", **options}
    server = uvicorn.Server(uvicorn.Config(app, **config))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
