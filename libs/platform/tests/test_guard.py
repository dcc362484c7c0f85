"""The request guard: rates per user and per client system, the limiter's memory, rate syntax.

Authentication before a body and the body limits are tried over the whole running nation in
tests/test_security.py; here the parts, on an app built by ``create_service_app``.
"""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI

from npo_platform.guard import KeyedRateLimiter, parse_rates, unmetered_gets
from npo_platform.identity import (
    ALGORITHM,
    DEFAULT_AUDIENCE,
    LOCAL_ISSUER,
    BearerClaims,
    Principal,
    Role,
    TokenVerifier,
    generate_keypair,
    issue_token,
)
from npo_platform.service import create_service_app
from npo_platform.settings import PlatformSettings

PRIVATE, PUBLIC = generate_keypair()


def _app(**limits: str) -> FastAPI:
    app = create_service_app(PlatformSettings(**limits), title="t", distribution="npo-platform",
                             token_verifier=TokenVerifier(PUBLIC))

    @app.get("/who")
    async def who(claims: BearerClaims) -> str:
        return claims.sub

    return app


def _bearer(sub: str, *roles: Role, client_id: str | None = None) -> dict[str, str]:
    who = Principal(sub=sub, name="n", roles=frozenset(roles or {Role.OPERATOR}), client_id=client_id)
    return {"Authorization": f"Bearer {issue_token(PRIVATE, who, timedelta(minutes=5))}"}


async def _statuses(app: FastAPI, headers: dict[str, str], count: int) -> list[int]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return [(await client.get("/who", headers=headers)).status_code for _ in range(count)]


async def test_a_user_past_the_rate_gets_429_with_retry_after_and_others_do_not() -> None:
    app = _app(rate_limit_user="3/minute", rate_limit_client="")
    assert await _statuses(app, _bearer("SE2321000016-U001"), 5) == [200, 200, 200, 429, 429]
    assert await _statuses(app, _bearer("SE2321000016-U002"), 1) == [200]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        limited = await client.get("/who", headers=_bearer("SE2321000016-U001"))
    assert (limited.status_code, limited.json()["code"]) == (429, "rate.limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


async def test_a_client_system_is_limited_across_its_users_and_platform_systems_are_not() -> None:
    app = _app(rate_limit_user="", rate_limit_client="2/minute")
    users = [_bearer(f"SE2321000016-U00{n}", client_id="SE2321000016-VIEWER") for n in range(3)]
    assert [s for u in users for s in await _statuses(app, u, 1)] == [200, 200, 429]
    assert await _statuses(app, _bearer("SE2321000016-U009"), 3) == [200, 200, 200]  # no client_id
    system = _bearer("SE5565594230-NPOAGP", Role.SYSTEM, client_id="SE2321000016-VIEWER")
    assert await _statuses(app, system, 3) == [200, 200, 200]


async def test_a_client_named_by_the_openid_azp_claim_is_limited_alike() -> None:
    """An OpenID Connect issuer names the client in ``azp`` (authorised party), not client_id."""
    app = _app(rate_limit_user="", rate_limit_client="2/minute")
    now = int(time.time())
    users = []
    for n in range(3):
        claims = {"sub": f"SE2321000016-U10{n}", "name": "n", "roles": ["operator"],
                  "azp": "SE2321000016-OIDC", "iss": LOCAL_ISSUER, "aud": DEFAULT_AUDIENCE,
                  "iat": now, "exp": now + 300, "jti": f"j{n}"}
        key = serialization.load_pem_private_key(PRIVATE, password=None)
        users.append({"Authorization": f"Bearer {jwt.encode(claims, key, algorithm=ALGORITHM)}"})
    assert [s for u in users for s in await _statuses(app, u, 1)] == [200, 200, 429]


async def test_gets_at_unmetered_paths_count_against_no_rate() -> None:
    """A SOAP front end's WSDLs and schemas: static, fetched in a burst by a client's tooling."""
    app = _app(rate_limit_user="2/minute", rate_limit_client="")
    unmetered_gets(app, ["/who"])
    assert await _statuses(app, _bearer("SE2321000016-U201"), 5) == [200] * 5


def test_the_limiter_forgets_callers_whose_bucket_has_drained() -> None:
    now = [0]
    limiter = KeyedRateLimiter(parse_rates("2/second"), clock=lambda: now[0])
    for n in range(1000):
        assert limiter.retry_after_ms(f"user-{n}") is None
    assert limiter.retry_after_ms("user-0") is None
    assert limiter.retry_after_ms("user-0") is not None  # its third within the second
    now[0] = 120_000  # two minutes on: every bucket drained, the next call prunes
    assert limiter.retry_after_ms("user-0") is None
    assert len(limiter._states) == 1


@pytest.mark.parametrize("text", ["20/sec", "x/second", "20 per second", "20/second;"])
def test_rates_are_read_strictly(text: str) -> None:
    if text.endswith(";"):
        assert len(parse_rates(text)) == 1
        return
    with pytest.raises(ValueError, match="rate"):
        parse_rates(text)
