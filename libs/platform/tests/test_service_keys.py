"""Service keys: a platform service signing its own system tokens (the query service) is trusted
by the verifiers for the ``system`` role alone, never for a user's role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from npo_platform.identity import (
    InvalidToken,
    KeySettingError,
    Principal,
    Role,
    SystemClaims,
    TokenVerifier,
    ensure_local_keypair,
    generate_keypair,
    issue_token,
    read_key_file,
)
from npo_platform.service import create_service_app
from npo_platform.settings import PlatformSettings

ISSUER, SERVICE, STRANGER = generate_keypair(), generate_keypair(), generate_keypair()
MINUTES = timedelta(minutes=5)
SYSTEM = Principal(sub="SE5565594230-NPOAGP", name="npo-query", roles=frozenset({Role.SYSTEM}))
PEOPLE = {
    Role.CLINICIAN: Principal(sub="SE2321000016-1234", name="Doris", roles=frozenset({Role.CLINICIAN}),
                              care_unit="SE2321000016-A1B2", care_giver="SE2321000016-0001",
                              assignment="A1", purpose="care"),
    Role.PATIENT: Principal(sub="citizen-7f3a", name="Tolvan", roles=frozenset({Role.PATIENT}),
                            patient="191212121212"),
    Role.COMPLIANCE_OFFICER: Principal(sub="SE2321000016-C001", name="Cecilia",
                                       roles=frozenset({Role.COMPLIANCE_OFFICER})),
    Role.OPERATOR: Principal(sub="SE2321000016-OP01", name="Olle", roles=frozenset({Role.OPERATOR})),
    Role.ADMIN: Principal(sub="SE2321000016-AD01", name="Ada", roles=frozenset({Role.ADMIN})),
    Role.PRODUCER: Principal(sub="SE2321000016-P001", name="Journal", roles=frozenset({Role.PRODUCER}),
                             care_giver="SE2321000016-0001"),
}
ENDPOINT = "https://producer.example/producers/SE2321000016-P001"


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(ISSUER[1], service_keys=[SERVICE[1]])


def test_a_service_key_signs_a_system_token(verifier: TokenVerifier) -> None:
    claims = verifier.verify(issue_token(SERVICE[0], SYSTEM, MINUTES))

    assert (claims.sub, claims.roles) == (SYSTEM.sub, frozenset({Role.SYSTEM}))


@pytest.mark.parametrize("role", sorted(PEOPLE))
def test_a_service_key_never_signs_another_role(verifier: TokenVerifier, role: Role) -> None:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(issue_token(SERVICE[0], PEOPLE[role], MINUTES))

    assert caught.value.code == "token.signer"
    assert verifier.verify(issue_token(ISSUER[0], PEOPLE[role], MINUTES)).roles == {role}


def test_a_service_key_never_adds_a_role_to_the_system_one(verifier: TokenVerifier) -> None:
    both = SYSTEM.model_copy(update={"roles": frozenset({Role.SYSTEM, Role.OPERATOR})})

    with pytest.raises(InvalidToken) as caught:
        verifier.verify(issue_token(SERVICE[0], both, MINUTES))

    assert caught.value.code == "token.signer"


def test_a_key_neither_the_issuers_nor_a_services_is_refused(verifier: TokenVerifier) -> None:
    for principal in (SYSTEM, PEOPLE[Role.CLINICIAN]):
        with pytest.raises(InvalidToken) as caught:
            verifier.verify(issue_token(STRANGER[0], principal, MINUTES))
        assert caught.value.code == "token.signature"


def test_without_service_keys_a_service_signed_token_is_refused() -> None:
    with pytest.raises(InvalidToken) as caught:
        TokenVerifier(ISSUER[1]).verify(issue_token(SERVICE[0], SYSTEM, MINUTES))

    assert caught.value.code == "token.signature"


def test_a_service_signed_token_stays_bound_to_its_audience(verifier: TokenVerifier) -> None:
    bound = issue_token(SERVICE[0], SYSTEM, MINUTES, audience=ENDPOINT)

    assert verifier.verify(bound, ENDPOINT).aud == ENDPOINT
    for elsewhere in (None, "https://other.example/producers/SE2321000016-P002"):
        with pytest.raises(InvalidToken) as caught:
            verifier.verify(bound, elsewhere)
        assert caught.value.code == "token.audience"
    with pytest.raises(InvalidToken) as unbound:
        verifier.verify(issue_token(SERVICE[0], SYSTEM, MINUTES), ENDPOINT)
    assert unbound.value.code == "token.audience"


def test_a_service_signed_token_is_checked_like_any_other(verifier: TokenVerifier) -> None:
    expired = issue_token(SERVICE[0], SYSTEM, MINUTES, now=datetime.now(UTC) - 2 * MINUTES)
    foreign = issue_token(SERVICE[0], SYSTEM, MINUTES, issuer="someone-else")

    for token, code in ((expired, "token.expired"), (foreign, "token.issuer")):
        with pytest.raises(InvalidToken) as caught:
            verifier.verify(token)
        assert caught.value.code == code


def _keys(tmp_path: Path) -> tuple[Path, Path]:
    _, issuer = ensure_local_keypair(tmp_path / "issuer")
    _, service = ensure_local_keypair(tmp_path / "service", "svc-ed25519")
    issuer.write_bytes(ISSUER[1])
    service.write_bytes(SERVICE[1])
    return issuer, service


async def test_a_service_trusts_the_service_keys_its_settings_name_for_system_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer, service = _keys(tmp_path)
    monkeypatch.setenv("NPO_JWT_PUBLIC_KEY_PATH", str(issuer))
    monkeypatch.setenv("NPO_JWT_SERVICE_KEY_PATHS", f"{tmp_path / 'nothing.pem'},{service}")
    with pytest.raises(KeySettingError, match=r"NPO_JWT_SERVICE_KEY_PATHS: cannot read .*nothing\.pem"):
        create_service_app(PlatformSettings(), title="t", distribution="npo-platform")
    monkeypatch.setenv("NPO_JWT_SERVICE_KEY_PATHS", f" {service} , ")
    app = create_service_app(PlatformSettings(), title="t", distribution="npo-platform")

    @app.get("/system")
    async def system(claims: SystemClaims) -> str:
        return claims.sub

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        accepted = await client.get("/system", headers=_bearer(SERVICE[0], SYSTEM))
        refused = [await client.get("/system", headers=_bearer(SERVICE[0], PEOPLE[Role.OPERATOR]))
                   for _ in range(2)]  # refused again: a refusal is never cached
    assert (accepted.status_code, accepted.json()) == (200, SYSTEM.sub)
    for answer in refused:
        assert answer.status_code == 401
        assert answer.json()["code"] == "token.signer"
        assert 'error_description="token.signer"' in answer.headers["www-authenticate"]


def _bearer(private: bytes, principal: Principal) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(private, principal, MINUTES)}"}


def test_a_key_file_is_read_only_when_it_is_an_ed25519_key_of_its_kind(tmp_path: Path) -> None:
    private, public = ensure_local_keypair(tmp_path)
    rsa_key = tmp_path / "rsa.pem"
    rsa_key.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    assert read_key_file(private, "S", private=True) == private.read_bytes()
    assert read_key_file(public, "S", private=False) == public.read_bytes()
    for path, kind in ((public, "private"), (rsa_key, "private"), (private, "public")):
        with pytest.raises(KeySettingError, match=f"^S: .* is not an Ed25519 {kind} key"):
            read_key_file(path, "S", private=kind == "private")
    with pytest.raises(KeySettingError, match=r"^S: cannot read .*missing\.pem"):
        read_key_file(tmp_path / "missing.pem", "S", private=True)
