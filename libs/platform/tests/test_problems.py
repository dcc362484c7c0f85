"""Problem details (RFC 9457) for every error an API answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from npo_platform.problems import PROBLEM_MEDIA_TYPE, Problem, install_problem_handlers

SECRET = "191212121212"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/conflict")
    async def conflict() -> None:
        raise Problem(409, "consent.exists", "A consent is already registered.", title="Taken")

    @app.get("/items/{number}")
    async def item(number: int) -> dict[str, int]:
        return {"number": number}

    @app.get("/crash/{patient}")
    async def crash(patient: str) -> None:
        raise RuntimeError(f"database said no about {patient}")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://npo.test") as client:
        yield client


@pytest.mark.parametrize(
    ("path", "status", "code", "title"),
    [
        ("/conflict", 409, "consent.exists", "Taken"),
        (f"/items/{SECRET}x", 422, "request.invalid", "Invalid request"),
        ("/nowhere", 404, "http.404", "Not Found"),
        (f"/crash/{SECRET}", 500, "internal", "Internal Server Error"),
    ],
)
async def test_errors_are_problem_details(
    client: httpx.AsyncClient, path: str, status: int, code: str, title: str
) -> None:
    response = await client.get(path)

    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = response.json()
    assert {k: body[k] for k in ("type", "title", "status", "code")} == {
        "type": f"urn:npo:problem:{code}",
        "title": title,
        "status": status,
        "code": code,
    }
    assert body["detail"]
    assert SECRET not in response.text


async def test_validation_problem_lists_locations_without_echoing_input(client: httpx.AsyncClient) -> None:
    body = (await client.get(f"/items/{SECRET}x")).json()

    assert body["errors"] == [
        {"loc": ["path", "number"], "msg": body["errors"][0]["msg"], "type": "int_parsing"}
    ]


async def test_unexpected_errors_are_logged_by_route_template_not_url(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await client.get(f"/crash/{SECRET}")

    [record] = [r for r in caplog.records if r.name == "npo_platform.problems"]
    assert record.getMessage() == "unhandled error in GET /crash/{patient}"
