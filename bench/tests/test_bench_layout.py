"""The benchmarks live in npo_bench alone: no service carries one or depends on npo_deploy."""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE_SOURCES = sorted((ROOT / "services").glob("*/src/*"))


def test_every_bench_command_comes_from_the_bench_package() -> None:
    benches = {e.name: e.value for e in entry_points(group="npo.bench")}
    assert set(benches) >= {"ingest", "query", "consent", "audit"}
    assert all(value.startswith("npo_bench.") for value in benches.values()), benches


def test_no_service_holds_a_bench_module_or_imports_the_deploy_tools() -> None:
    assert SERVICE_SOURCES
    importing = re.compile(r"^\s*(from|import)\s+npo_deploy\b", re.MULTILINE)
    for source in SERVICE_SOURCES:
        assert not [p.name for p in source.glob("**/bench*.py")], source
        offenders = [p.name for p in source.glob("**/*.py") if importing.search(p.read_text("utf-8"))]
        assert offenders == [], f"{source.name} imports npo_deploy in {offenders}"
