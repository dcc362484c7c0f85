"""The house plan (docs/architecture.md), read from the source: every service has the skeleton's
modules, the rules import no I/O, and only the wiring knows the storage adapters."""

from __future__ import annotations

import ast
import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PLAN = ROOT / "docs" / "architecture.md"
SERVICES = sorted(p.parent for p in (ROOT / "services").glob("*/src/npo_*/__init__.py"))
SKELETON = ("config", "domain", "service", "store", "store_pg", "store_memory", "api", "events", "main")
RULES_BY_ANOTHER_NAME = {"routing.py"}  # the query's routing table: a domain module by its old name
IO_LIBRARIES = {"asyncpg", "aiokafka", "fastapi", "starlette", "httpx", "aiohttp", "lxml", "zeep"}


def imports(module: Path) -> set[str]:
    """What ``module`` imports: absolute names, and the service's own modules as ``.name``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names = [node.module] if node.module else [a.name for a in node.names]
                found |= {"." + name.split(".")[0] for name in names}
            elif node.module:
                found.add(node.module)
    return found


def test_there_are_services_to_check() -> None:
    assert [p.name for p in SERVICES] == ["npo_audit", "npo_consent", "npo_index", "npo_query"]


@pytest.mark.parametrize("package", SERVICES, ids=lambda p: p.name)
def test_every_service_has_the_skeletons_modules(package: Path) -> None:
    assert [m for m in SKELETON if not (package / f"{m}.py").is_file()] == []


@pytest.mark.parametrize("package", SERVICES, ids=lambda p: p.name)
def test_every_other_module_is_named_by_the_plan(package: Path) -> None:
    """A module beyond the skeleton is named on the page (`cache.py`) or fits a family it names
    (`fhir*.py`, `domain_*.py`): a newcomer finds every module explained there."""
    named = set(re.findall(r"`([a-z_*]+\.py)`", PLAN.read_text()))
    unnamed = [
        m.name
        for m in sorted(package.glob("*.py"))
        if m.stem not in SKELETON and m.name not in ("__init__.py", "__main__.py", "cli.py")
        and not any(fnmatch(m.name, pattern) for pattern in named)
    ]
    assert unnamed == []


@pytest.mark.parametrize("package", SERVICES, ids=lambda p: p.name)
def test_the_rules_do_no_io_and_import_only_rules(package: Path) -> None:
    modules = sorted(package.glob("*.py"))
    rules = [m for m in modules if m.stem.startswith("domain") or m.name in RULES_BY_ANOTHER_NAME]
    for module in rules:
        found = imports(module)
        own = {name for name in found if name.startswith(".") and not name.startswith(".domain")}
        io = {name for name in found if name.split(".")[0] in IO_LIBRARIES}
        assert (module.name, own, io) == (module.name, set(), set())


@pytest.mark.parametrize("package", SERVICES, ids=lambda p: p.name)
def test_only_the_wiring_knows_the_storage_adapters_and_nothing_knows_the_wiring(package: Path) -> None:
    for module in sorted(package.glob("*.py")):
        found = imports(module)
        adapters = {n for n in found if n.startswith((".store_pg", ".store_memory"))}
        if module.stem != "main" and not module.stem.startswith("store_pg"):
            assert (module.name, adapters) == (module.name, set())
        if module.stem not in ("cli", "__main__"):
            assert (module.name, ".main" in found) == (module.name, False)


@pytest.mark.parametrize("package", SERVICES, ids=lambda p: p.name)
def test_no_service_imports_another(package: Path) -> None:
    others = {p.name for p in SERVICES} - {package.name}
    for module in sorted(package.glob("*.py")):
        crossing = {n for n in imports(module) if n.split(".")[0] in others}
        assert (module.name, crossing) == (module.name, set())
