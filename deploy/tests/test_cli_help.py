"""``npo --help`` names every command, the services' own (entry points) included."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from typer.testing import CliRunner

from npo_deploy.cli import app


def test_help_lists_every_command_and_group() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0, result.output
    listed = {line.split()[1] for line in result.output.splitlines()
              if line.startswith("│ ") and len(line.split()) > 1 and not line.split()[1].startswith("-")}
    expected = {"up", "down", "infra", "token", "bench"}
    expected |= {e.name for group in ("npo.cli", "npo.commands") for e in entry_points(group=group)}
    assert "audit" in expected
    assert expected <= listed, expected - listed


def test_bench_help_lists_every_benchmark() -> None:
    result = CliRunner().invoke(app, ["bench", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for entry in entry_points(group="npo.bench"):
        assert f"│ {entry.name} " in result.output, entry.name


def test_npo_up_names_the_riv_logical_addresses_the_services_answer_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`npo up` prints the index's own and the aggregating logical address, one line each."""
    from npo_deploy import cli, stack

    printed: list[str] = []
    monkeypatch.setenv("QUERY_RIV_LOGICAL_ADDRESS", "SE5565594230-AGP")
    monkeypatch.setattr(cli, "up", lambda kafka_nodes=None: None)
    monkeypatch.setattr(stack, "up", lambda settings, console: stack.services())
    monkeypatch.setattr(cli, "_indexed_engagements", lambda settings, services: 1)
    monkeypatch.setattr(cli, "_welcome", lambda settings, services: None)
    monkeypatch.setattr(cli.console, "print", lambda *args, **_: printed.append(str(args[0])))
    cli.up_all(announce=False, kafka_nodes=None)
    assert "riv index logical address: SE5565594230-NPOIDX" in printed
    assert "riv aggregating logical address: SE5565594230-AGP" in printed
