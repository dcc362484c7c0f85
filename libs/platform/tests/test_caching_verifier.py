"""The verified-token cache: verifies a token once, never serves an expired or invalid one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from npo_platform.identity import (
    CachingTokenVerifier,
    Claims,
    InvalidToken,
    Principal,
    Role,
    TokenVerifier,
    ensure_local_keypair,
    issue_token,
)

ANNA = Principal(sub="SE2321000016-ANNA", name="Anna", roles=frozenset({Role.SYSTEM}))


class Counting(TokenVerifier):
    calls = 0

    def verify(self, token: str, audience: str | None = None) -> Claims:
        self.calls += 1
        return super().verify(token, audience)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[bytes, bytes]:
    private, public = ensure_local_keypair(tmp_path)
    return private.read_bytes(), public.read_bytes()


def test_a_token_is_verified_once_while_valid(keys: tuple[bytes, bytes]) -> None:
    inner = Counting(keys[1])
    verifier = CachingTokenVerifier(inner)
    token = issue_token(keys[0], ANNA, timedelta(minutes=5))

    assert verifier.verify(token) == verifier.verify(token)
    assert inner.calls == 1


def test_an_expired_token_is_not_served_from_the_cache(keys: tuple[bytes, bytes]) -> None:
    inner = Counting(keys[1], leeway=timedelta(0))
    verifier = CachingTokenVerifier(inner)
    issued = datetime.now(UTC) - timedelta(minutes=10)
    token = issue_token(keys[0], ANNA, timedelta(minutes=1), now=issued)

    with pytest.raises(InvalidToken):
        verifier.verify(token)
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    assert inner.calls == 2


def test_the_cache_is_bounded(keys: tuple[bytes, bytes]) -> None:
    verifier = CachingTokenVerifier(TokenVerifier(keys[1]), size=2)
    tokens = [issue_token(keys[0], ANNA, timedelta(minutes=5)) for _ in range(3)]
    for token in tokens:
        verifier.verify(token)
    assert list(verifier._claims) == tokens[1:]


def test_a_cached_token_is_verified_again_once_past_its_expiry(
    keys: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    inner = Counting(keys[1])
    verifier = CachingTokenVerifier(inner)
    claims = verifier.verify(issue_token(keys[0], ANNA, timedelta(minutes=1)))
    token = next(iter(verifier._claims))

    monkeypatch.setattr("npo_platform.identity.time.time", lambda: claims.exp + 1.0)
    verifier.verify(token)  # the inner verifier's own clock still accepts it here

    assert inner.calls == 2


def test_a_cached_token_still_names_the_audience_asked_for(keys: tuple[bytes, bytes]) -> None:
    verifier = CachingTokenVerifier(TokenVerifier(keys[1]))
    bound = issue_token(keys[0], ANNA, timedelta(minutes=5), audience="https://p.example/producers/LA1")
    assert verifier.verify(bound, "https://p.example/producers/LA1").aud == "https://p.example/producers/LA1"
    for elsewhere in (None, "https://p.example/producers/LA2"):  # cached now: refused all the same
        with pytest.raises(InvalidToken) as refused:
            verifier.verify(bound, elsewhere)
        assert refused.value.code == "token.audience"
