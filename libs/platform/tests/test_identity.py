"""Identity tokens: issue/verify, local keys, and the FastAPI bearer dependencies."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import Depends, FastAPI
from pydantic import ValidationError

from npo_platform.identity import (
    PUBLIC_KEY_FILE,
    BearerClaims,
    ClinicianClaims,
    InvalidToken,
    Principal,
    Role,
    TokenVerifier,
    ensure_local_keypair,
    issue_token,
    load_token_verifier,
    require_roles,
)
from npo_platform.problems import PROBLEM_MEDIA_TYPE, install_problem_handlers
from npo_platform.settings import PlatformSettings

CLINICIAN = Principal(
    sub="SE2321000016-1234",
    name="Doris Doktor",
    roles=frozenset({Role.CLINICIAN}),
    care_unit="SE2321000016-A1B2",
    care_giver="SE2321000016-0001",
    assignment="vård och behandling, Akutmottagningen",
    purpose="care",
    title="Läkare",
)
PATIENT = Principal(
    sub="citizen-7f3a",
    name="Tolvan Tolvansson",
    roles=frozenset({Role.PATIENT}),
    patient="191212121212",
)
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    private, public = ensure_local_keypair(tmp_path_factory.mktemp("keys"))
    return private.read_bytes(), public.read_bytes()


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    private, public = ensure_local_keypair(tmp_path_factory.mktemp("other-keys"))
    return private.read_bytes(), public.read_bytes()


@pytest.fixture
def verifier(keys: tuple[bytes, bytes]) -> TokenVerifier:
    return TokenVerifier(keys[1])


def test_round_trip_keeps_every_claim(keys: tuple[bytes, bytes], verifier: TokenVerifier) -> None:
    now = datetime.now(UTC)

    claims = verifier.verify(issue_token(keys[0], CLINICIAN, HOUR, now=now))

    assert claims.model_dump(include=set(Principal.model_fields)) == CLINICIAN.model_dump()
    assert (claims.iss, claims.aud) == ("npo-local-issuer", "npo")
    assert claims.exp - claims.iat == 3600
    assert claims.jti


def test_each_token_gets_its_own_id(keys: tuple[bytes, bytes], verifier: TokenVerifier) -> None:
    first = verifier.verify(issue_token(keys[0], CLINICIAN, HOUR))
    second = verifier.verify(issue_token(keys[0], CLINICIAN, HOUR))

    assert first.jti != second.jti


def test_patient_claim_round_trips_but_stays_out_of_repr(
    keys: tuple[bytes, bytes], verifier: TokenVerifier
) -> None:
    claims = verifier.verify(issue_token(keys[0], PATIENT, HOUR))

    assert claims.patient_id is not None
    assert claims.patient_id.value == "191212121212"
    assert "191212121212" not in repr(claims)
    assert "1212121212" not in str(claims)


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    flipped = "A" if signature[0] != "A" else "B"
    return f"{header}.{payload}.{flipped}{signature[1:]}"


def _forge_payload(token: str) -> str:
    header, _, signature = token.split(".")
    other = jwt.encode({"sub": "SE2321000016-9999"}, "k" * 32, algorithm="HS256").split(".")[1]
    return f"{header}.{other}.{signature}"


@pytest.mark.parametrize(
    ("make_token", "code"),
    [
        (lambda k, o: issue_token(k, CLINICIAN, HOUR, now=datetime.now(UTC) - 2 * HOUR),
         "token.expired"),
        (lambda k, o: _tamper(issue_token(k, CLINICIAN, HOUR)), "token.signature"),
        (lambda k, o: _forge_payload(issue_token(k, CLINICIAN, HOUR)), "token.signature"),
        (lambda k, o: issue_token(o, CLINICIAN, HOUR), "token.signature"),
        (lambda k, o: issue_token(k, CLINICIAN, HOUR, audience="elsewhere"), "token.audience"),
        (lambda k, o: issue_token(k, CLINICIAN, HOUR, issuer="someone-else"), "token.issuer"),
        (lambda k, o: issue_token(k, CLINICIAN, HOUR, now=datetime.now(UTC) + HOUR),
         "token.not_yet_valid"),
        (lambda k, o: "not-a-token", "token.malformed"),
        (lambda k, o: jwt.encode(_payload(), "k" * 32, algorithm="HS256"), "token.algorithm"),
        (lambda k, o: _sign(k, _payload(exclude="jti")), "token.claims"),
        (lambda k, o: _sign(k, _payload(exclude="exp")), "token.claims"),
        (lambda k, o: _sign(k, _payload(exclude="roles")), "token.claims"),
        (lambda k, o: _sign(k, _payload(exclude="care_unit")), "token.claims"),
        (lambda k, o: _sign(k, _payload(roles=["astronaut"])), "token.claims"),
        (lambda k, o: _sign(k, _payload(care_giver="SE2321000017-1")), "token.claims"),
        (lambda k, o: _sign(k, _payload(sub="not-an-hsa-id")), "token.claims"),
    ],
)  # fmt: skip
def test_untrustworthy_tokens_are_rejected_with_a_code(
    keys: tuple[bytes, bytes],
    other_keys: tuple[bytes, bytes],
    verifier: TokenVerifier,
    make_token: Callable[[bytes, bytes], str],
    code: str,
) -> None:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(make_token(keys[0], other_keys[0]))

    assert caught.value.code == code


def _payload(exclude: str | None = None, **overrides: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    payload = {
        **CLINICIAN.model_dump(mode="json", exclude_none=True),
        "iss": "npo-local-issuer",
        "aud": "npo",
        "iat": now,
        "exp": now + 600,
        "jti": "j-1",
        **overrides,
    }
    payload.pop(exclude or "", None)
    return payload


def _sign(private_key_pem: bytes, payload: dict[str, Any]) -> str:
    return jwt.encode(payload, private_key_pem, algorithm="EdDSA")


def test_leeway_accepts_a_token_just_expired(keys: tuple[bytes, bytes]) -> None:
    token = issue_token(keys[0], CLINICIAN, HOUR, now=datetime.now(UTC) - HOUR - timedelta(seconds=5))

    assert TokenVerifier(keys[1], leeway=timedelta(seconds=30)).verify(token)
    with pytest.raises(InvalidToken):
        TokenVerifier(keys[1], leeway=timedelta(0)).verify(token)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"roles": frozenset({Role.CLINICIAN}), "sub": "SE2321000016-1"}, "clinician needs"),
        ({"roles": frozenset({Role.PATIENT}), "sub": "citizen"}, "patient role needs"),
        ({"roles": frozenset({Role.PRODUCER}), "sub": "producer-system"}, "HSA-id"),
        ({"roles": frozenset(), "sub": "SE2321000016-1"}, "at least 1"),
        (
            {"roles": frozenset({Role.PATIENT}), "sub": "191212121212", "patient": "191212121212"},
            "personal identity number",
        ),
    ],
)
def test_inconsistent_principals_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Principal(name="Someone", **fields)


def test_local_keypair_is_created_once_with_a_private_key_only_the_owner_reads(
    tmp_path: Path,
) -> None:
    keys_dir = tmp_path / "state" / "keys"

    private, public = ensure_local_keypair(keys_dir)
    first = private.read_bytes(), public.read_bytes()
    again = ensure_local_keypair(keys_dir)

    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in first[0]
    assert b"PUBLIC KEY" in first[1]
    assert again == (private, public)
    assert (private.read_bytes(), public.read_bytes()) == first
    assert sorted(p.name for p in keys_dir.iterdir()) == sorted([private.name, public.name])


def test_a_lost_public_key_is_derived_again_from_the_private_key(tmp_path: Path) -> None:
    _, public = ensure_local_keypair(tmp_path)
    original = public.read_bytes()
    public.unlink()

    ensure_local_keypair(tmp_path)

    assert public.read_bytes() == original


def test_load_token_verifier_reads_the_configured_or_local_public_key(tmp_path: Path) -> None:
    private, public = ensure_local_keypair(tmp_path / "keys")
    token = issue_token(private.read_bytes(), CLINICIAN, HOUR)
    local = PlatformSettings(state_dir=tmp_path)
    configured = PlatformSettings(state_dir=tmp_path / "nowhere", jwt_public_key_path=public)

    assert (local.keys_dir / PUBLIC_KEY_FILE) == public
    assert load_token_verifier(local).verify(token).sub == CLINICIAN.sub
    assert load_token_verifier(configured).verify(token).sub == CLINICIAN.sub


# --- FastAPI dependencies -------------------------------------------------------------------


@pytest.fixture
async def client(verifier: TokenVerifier) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.token_verifier = verifier
    install_problem_handlers(app)

    @app.get("/me")
    async def me(claims: BearerClaims) -> dict[str, str]:
        return {"sub": claims.sub}

    @app.get("/overview")
    async def overview(claims: ClinicianClaims) -> dict[str, str]:
        return {"care_unit": claims.care_unit or ""}

    @app.get("/coverage", dependencies=[Depends(require_roles(Role.OPERATOR, Role.ADMIN))])
    async def coverage() -> dict[str, str]:
        return {"ok": "yes"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://npo.test") as client:
        yield client


def _bearer(keys: tuple[bytes, bytes], principal: Principal) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(keys[0], principal, HOUR)}"}


OPERATOR = Principal(sub="SE2321000016-OP1", name="Olle Operatör", roles=frozenset({Role.OPERATOR}))


@pytest.mark.parametrize(
    ("headers", "code", "www_authenticate"),
    [
        ({}, "token.missing", "Bearer"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "token.missing", "Bearer"),
        ({"Authorization": "Bearer not-a-token"}, "token.malformed", "Bearer error="),
    ],
)
async def test_missing_or_invalid_token_is_a_401_problem(
    client: httpx.AsyncClient, headers: dict[str, str], code: str, www_authenticate: str
) -> None:
    response = await client.get("/me", headers=headers)

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.headers["www-authenticate"].startswith(www_authenticate)
    body = response.json()
    assert body["code"] == code
    assert body["status"] == 401
    assert body["type"] == f"urn:npo:problem:{code}"
    assert body["title"] == "Unauthorized"
    assert body["detail"]


async def test_expired_token_is_a_401_problem(client: httpx.AsyncClient, keys: tuple[bytes, bytes]) -> None:
    token = issue_token(keys[0], CLINICIAN, HOUR, now=datetime.now(UTC) - 2 * HOUR)

    response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert response.json()["code"] == "token.expired"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("path", "principal", "status"),
    [
        ("/me", CLINICIAN, 200),
        ("/me", PATIENT, 200),
        ("/overview", CLINICIAN, 200),
        ("/overview", PATIENT, 403),
        ("/overview", OPERATOR, 403),
        ("/coverage", OPERATOR, 200),
        ("/coverage", CLINICIAN, 403),
    ],
)
async def test_roles_decide_between_200_and_403(
    client: httpx.AsyncClient, keys: tuple[bytes, bytes], path: str, principal: Principal, status: int
) -> None:
    response = await client.get(path, headers=_bearer(keys, principal))

    assert response.status_code == status
    if status == 403:
        assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
        assert response.json()["code"] == "role.missing"
        assert "www-authenticate" not in response.headers


async def test_the_route_receives_the_verified_claims(
    client: httpx.AsyncClient, keys: tuple[bytes, bytes]
) -> None:
    response = await client.get("/overview", headers=_bearer(keys, CLINICIAN))

    assert response.json() == {"care_unit": "SE2321000016-A1B2"}


def test_require_roles_needs_a_role() -> None:
    with pytest.raises(ValueError, match="at least one role"):
        require_roles()


async def test_an_app_without_a_verifier_fails_closed(keys: tuple[bytes, bytes]) -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/me")
    async def me(claims: BearerClaims) -> dict[str, str]:
        return {"sub": claims.sub}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://npo.test") as client:
        response = await client.get("/me", headers=_bearer(keys, CLINICIAN))

    assert response.status_code == 503
    assert response.json()["code"] == "auth.unconfigured"
