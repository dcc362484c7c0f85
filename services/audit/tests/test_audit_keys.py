"""The register's key (keyed address digests for the kinship rule) in the state dir."""

from __future__ import annotations

import threading
from pathlib import Path

from npo_audit.signing import REGISTER_KEY_FILE, RegisterKey

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
