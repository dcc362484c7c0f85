"""The audit's keys in the state dir: the register key made race-free, and all of them read,
never written, when a deployment provides them."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from npo_audit.config import AuditSettings
from npo_audit.main import create_app
from npo_audit.signing import REGISTER_KEY_FILE, RegisterKey, ensure_keys

STARTING_TOGETHER = 8


def _digests_of_processes_starting_together(keys_dir: Path) -> set[str]:
    """What each of several starters (threads here) digests an address to with the key it got."""
    start, found = threading.Barrier(STARTING_TOGETHER), []

    def starter() -> None:
        start.wait()
        found.append(RegisterKey.in_dir(keys_dir).digest("Storgatan 1, Motala"))

    threads = [threading.Thread(target=starter) for _ in range(STARTING_TOGETHER)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return set(found)


def test_starters_racing_for_a_new_key_all_get_the_same_one(tmp_path: Path) -> None:
    for attempt in range(40):
        keys_dir = tmp_path / str(attempt)
        assert len(_digests_of_processes_starting_together(keys_dir)) == 1
        assert len((keys_dir / REGISTER_KEY_FILE).read_bytes()) == 32
        assert (keys_dir / REGISTER_KEY_FILE).stat().st_mode & 0o077 == 0  # the owner's only


def test_the_key_outlives_the_process(tmp_path: Path) -> None:
    first = RegisterKey.in_dir(tmp_path).digest("Ågatan 5, Kinda")
    assert RegisterKey.in_dir(tmp_path).digest("ågatan 5  kinda") == first


@pytest.mark.integration
async def test_the_audit_starts_on_keys_it_may_only_read(audit_settings: AuditSettings) -> None:
    """As on Kubernetes: every key made beforehand (npo k8s secrets) and mounted read-only,
    readable through the group. Starting must read them and write nothing: no new key, no mode
    change (a chmod on a read-only mount fails, and the pod with it)."""
    keys_dir = audit_settings.keys_dir
    for path in ensure_keys(keys_dir):
        path.chmod(0o440)
    before = _snapshot(keys_dir)

    app = create_app(audit_settings)
    async with app.router.lifespan_context(app):
        assert app.state.audit.store is not None

    assert _snapshot(keys_dir) == before


def _snapshot(keys_dir: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mode, p.read_bytes()) for p in sorted(keys_dir.iterdir())}
