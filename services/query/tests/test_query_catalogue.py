"""The category list the clinician's web view builds its choice from: all 17, clinicians only."""

from __future__ import annotations

import httpx
from query_fixtures import VERIFIER, clinician, token

from npo_platform.categories import CATEGORIES
from npo_platform.identity import Role
from npo_query.config import QuerySettings
from npo_query.main import create_app


def _client() -> httpx.AsyncClient:
    app = create_app(QuerySettings(), token_verifier=VERIFIER)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://npo-query.test")


async def test_a_clinician_gets_all_17_categories_in_number_order() -> None:
    async with _client() as client:
        answer = await client.get("/v1/categories", headers=clinician())

    assert answer.status_code == 200
    body = answer.json()
    assert [c["number"] for c in body] == list(range(1, 18))
    assert [c["key"] for c in body] == [c.key for c in CATEGORIES]
    assert body[7] == {"number": 8, "key": "notes", "nameEn": "Notes", "nameSv": "Anteckningar",
                       "available": True}
    assert not body[16]["available"]


async def test_the_category_list_needs_a_clinician_token() -> None:
    async with _client() as client:
        anonymous = await client.get("/v1/categories")
        operator = await client.get("/v1/categories",
                                    headers={"Authorization": f"Bearer {token(Role.OPERATOR)}"})

    assert anonymous.status_code == 401
    assert operator.status_code == 403
