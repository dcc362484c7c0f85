"""Browser pages served by a service: its own HTML/JS under ``/ui``, the shared assets, a config.

No front-end build: plain HTML, one ES module per page and the shared ``npo.js``/``npo.css``.
The page shells hold no data and are served without a token (a browser cannot send a bearer
token when it follows a link); every data call they make is an authenticated API request. The
token reaches the page in the URL fragment (``/ui/#token=…``, never sent to a server, removed
from the address bar at once) or by pasting it, and lives in the tab's sessionStorage.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ASSETS = Path(str(files("npo_platform.web") / "assets"))


class WebConfig(BaseModel):
    """What a page needs to know: which service serves it and where the others' APIs are."""

    service: str
    links: dict[str, str]


def mount_web(app: FastAPI, pages: Path, *, service: str, links: Mapping[str, str] | None = None) -> None:
    """Serve ``pages`` (a folder with ``index.html`` and friends) at ``/ui``.

    ``links`` names the other services' base URLs the pages call (e.g. ``{"consent": url}``);
    only they (and this origin) are allowed by the pages' Content-Security-Policy.
    """
    config = WebConfig(service=service, links=dict(links or {}))

    @app.get("/ui/config.json", include_in_schema=False)
    async def web_config() -> WebConfig:
        return config

    app.mount("/ui/assets", StaticFiles(directory=ASSETS), name="ui-assets")
    app.mount("/ui", StaticFiles(directory=pages, html=True), name="ui")
    app.add_middleware(PageHeaders, connect=sorted({_origin(u) for u in config.links.values()}))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class PageHeaders:
    """Security headers on ``/ui`` responses: a strict CSP (no inline script, no framing)."""

    def __init__(self, app: ASGIApp, connect: list[str]) -> None:
        self.app = app
        sources = " ".join(["'self'", *connect])
        policy = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src {sources}; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'self'"
        )
        self.headers = [
            (b"content-security-policy", policy.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"cache-control", b"no-cache"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/ui"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, with_headers)
