"""npo-query answers its liveness probe with no infrastructure running."""

from __future__ import annotations

import httpx

from npo_query.config import QuerySettings
from npo_query.main import create_app


def _client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(QuerySettings()))
    return httpx.AsyncClient(transport=transport, base_url="http://npo-query.test")


async def test_health_answers_ok_with_the_service_name() -> None:
    async with _client() as client:
        response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "npo-query"}


async def test_openapi_documents_the_service_and_its_health_route() -> None:
    async with _client() as client:
        schema = (await client.get("/openapi.json")).json()

    assert schema["info"]["title"] == "NPO patient overview query"
    assert schema["info"]["version"] == "0.1.0"
    assert "/health" in schema["paths"]
