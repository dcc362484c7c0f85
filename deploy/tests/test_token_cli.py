"""`npo token issue` prints tokens the services' shared verifier accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from npo_deploy.cli import app
from npo_platform.identity import Role, TokenVerifier

CLINICIAN = [
    "token", "issue", "--role", "clinician", "--user", "SE2321000016-A1B2",
    "--care-unit", "SE2321000016-U001", "--care-giver", "SE2321000016-G001",
    "--assignment", "A1", "--purpose", "care",
]


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NPO_STATE_DIR", str(tmp_path))
    # Servers elsewhere: the CLI (in this process) then sets no local credentials in os.environ,
    # which would outlive the test and point later tests' settings at the local stack.
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.invalid/npo")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.invalid:9092")
    return tmp_path


def test_issued_token_verifies_with_the_generated_public_key(state_dir: Path) -> None:
    result = CliRunner().invoke(app, CLINICIAN)
    assert result.exit_code == 0, result.output
    public_key = (state_dir / "keys").glob("*public*.pem")
    claims = TokenVerifier(next(public_key).read_bytes()).verify(result.stdout.strip())
    assert claims.roles == frozenset({Role.CLINICIAN})
    assert claims.care_unit == "SE2321000016-U001"


def test_inconsistent_claims_are_refused(state_dir: Path) -> None:
    result = CliRunner().invoke(app, ["token", "issue", "--role", "clinician"])
    assert result.exit_code != 0
    assert "care_unit" in result.output


def test_keys_command_prints_the_public_key_path(state_dir: Path) -> None:
    result = CliRunner().invoke(app, ["token", "keys"])
    assert result.exit_code == 0
    assert Path(result.stdout.strip()).read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
