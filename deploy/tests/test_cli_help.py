"""``npo --help`` names every command, the services' own (entry points) included."""

from __future__ import annotations

from importlib.metadata import entry_points

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
