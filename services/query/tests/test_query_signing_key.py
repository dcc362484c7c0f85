"""The query's own signing key (QUERY_SIGNING_KEY_PATH): its system and producer tokens are
signed with it, not with the user-token issuer's key; unset, the local issuer's key as before;
unusable, the service refuses to start with one line naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from query_fixtures import running

from npo_deploy.processes import free_port
from npo_platform.identity import (
    PUBLIC_KEY_FILE,
    InvalidToken,
    KeySettingError,
    Role,
    TokenVerifier,
    ensure_local_keypair,
)
from npo_query import main
from npo_query.config import QuerySettings
from npo_query.main import create_app
from npo_query.tokens import producer_token_source, token_source

ENDPOINT = "https://producer.example/producers/SE2321000016-P001"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state dir holding the local issuer's key pair (as `npo up` makes it)."""
    ensure_local_keypair(tmp_path / "keys")
    return tmp_path


def _platform_token(settings: QuerySettings) -> str:
    source = token_source(settings)
    assert not isinstance(source, str)
    return source()


def test_with_its_own_key_the_query_signs_what_only_that_key_verifies(state: Path) -> None:
    own_private, own_public = ensure_local_keypair(state / "query", "query-ed25519")
    settings = QuerySettings(state_dir=state, signing_key_path=own_private)
    issuer_only = TokenVerifier((state / "keys" / PUBLIC_KEY_FILE).read_bytes())
    trusting = TokenVerifier((state / "keys" / PUBLIC_KEY_FILE).read_bytes(),
                             service_keys=[own_public.read_bytes()])

    platform, producer = _platform_token(settings), producer_token_source(settings)(ENDPOINT)

    assert trusting.verify(platform).roles == frozenset({Role.SYSTEM})
    assert trusting.verify(producer, ENDPOINT).sub == settings.system_hsa_id
    for token, audience in ((platform, None), (producer, ENDPOINT)):
        with pytest.raises(InvalidToken) as caught:
            issuer_only.verify(token, audience)
        assert caught.value.code == "token.signature"


def test_unset_the_query_signs_with_the_local_issuers_key(state: Path) -> None:
    settings = QuerySettings(state_dir=state)
    issuer = TokenVerifier((state / "keys" / PUBLIC_KEY_FILE).read_bytes())

    assert issuer.verify(_platform_token(settings)).sub == settings.system_hsa_id
    assert issuer.verify(producer_token_source(settings)(ENDPOINT), ENDPOINT).aud == ENDPOINT


def _unusable(state: Path) -> list[tuple[dict[str, str], str]]:
    """Environments whose signing key cannot be used, and what the error must say."""
    return [
        ({"QUERY_SIGNING_KEY_PATH": str(state / "absent.pem")},
         f"QUERY_SIGNING_KEY_PATH: cannot read {state / 'absent.pem'}"),
        ({"QUERY_SIGNING_KEY_PATH": str(state / "keys" / PUBLIC_KEY_FILE)},  # no private key
         "QUERY_SIGNING_KEY_PATH: .* is not an Ed25519 private key"),
        ({"NPO_STATE_DIR": str(state / "empty")},
         r"QUERY_SIGNING_KEY_PATH \(unset: the local issuer's key\): cannot read"),
    ]


@pytest.mark.parametrize("case", range(3))
async def test_an_unusable_signing_key_stops_the_start_naming_the_setting(
    state: Path, case: int, served_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, message = _unusable(state)[case]
    monkeypatch.setenv("NPO_STATE_DIR", str(state))
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(KeySettingError, match=message):  # an app's start (its lifespan)
        async with running(create_app(QuerySettings(run_consumers=False))):
            pass
    with pytest.raises(SystemExit, match=f"npo-query cannot start: {message}"):
        main.run()  # the entry point, before any server process
    assert served_options == {}


def test_the_service_refuses_to_start_with_one_line_naming_the_setting(state: Path) -> None:
    missing = state / "absent.pem"
    env = {**os.environ, "NPO_STATE_DIR": str(state), "QUERY_SIGNING_KEY_PATH": str(missing),
           "QUERY_HTTP_PORT": str(free_port())}

    done = subprocess.run([Path(sys.executable).parent / "npo-query"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"npo-query cannot start: QUERY_SIGNING_KEY_PATH: cannot read {missing} "
        "(No such file or directory)"]
