"""The embedded PostgreSQL launcher against a real server: start, query, stop, restart on the same data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from npo_deploy import postgres
from npo_deploy.testing import isolated_postgres, scratch_dir

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir("npo-postgres-test-") as path:
        yield path


async def test_server_lifecycle_keeps_tables(scratch: Path) -> None:
    server = isolated_postgres(scratch / "postgres")
    assert postgres.start(server) is True
    try:
        assert postgres.start(server) is False  # already running
        connection = await asyncpg.connect(server.url)
        try:
            assert await connection.fetchval("SELECT current_user") == server.user
            for name, value in postgres.SERVER_SETTINGS.items():  # checkpoints by time
                assert await connection.fetchval(f"SHOW {name}") == value
            await connection.execute("CHECKPOINT")  # the benchmarks start from one
            await connection.execute("CREATE TABLE kept (id int PRIMARY KEY)")
            await connection.execute("INSERT INTO kept VALUES (42)")
        finally:
            await connection.close()
    finally:
        assert postgres.stop(server) is True
    assert not postgres.is_running(server)
    assert not postgres.is_reachable(server.url)
    assert postgres.stop(server) is False

    assert postgres.start(server) is True
    try:
        connection = await asyncpg.connect(server.url)
        try:
            assert await connection.fetchval("SELECT id FROM kept") == 42
        finally:
            await connection.close()
    finally:
        postgres.stop(server)
