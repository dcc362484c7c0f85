"""The embedded PostgreSQL launcher against a real server: start, query, stop, restart on the same data."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
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


async def test_a_data_dir_from_before_the_lockdown_is_taken_over_by_the_service_roles(scratch: Path) -> None:
    """A state dir made before the lockdown: a server trusting loopback, whose services
    connected as the owner and made schemas `npo_index` and `audit`. Started as the locked
    launcher starts it, each service role owns its schema (renamed to the role's) with its data."""
    locked = isolated_postgres(scratch / "postgres")
    before = replace(locked, secrets=None)
    postgres.start(before)
    try:
        connection = await asyncpg.connect(before.url)
        try:
            for schema in ("npo_index", "audit"):  # the test's own names, no input
                await connection.execute(f"CREATE SCHEMA {schema}; SET search_path TO {schema}")
                await connection.execute("CREATE TABLE kept (id serial PRIMARY KEY, what text);"
                                         "INSERT INTO kept (what) VALUES ('old');"
                                         "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        finally:
            await connection.close()
    finally:
        postgres.stop(before)
    postgres.start(locked)
    try:
        for role in ("npo_index", "npo_audit"):
            connection = await asyncpg.connect(locked.url_for(role, locked.database),
                                               server_settings={"search_path": role})
            try:
                await connection.execute("INSERT INTO kept (what) VALUES ('new')")
                assert [r["what"] for r in await connection.fetch("SELECT what FROM kept ORDER BY id")] == [
                    "old", "new"]
                assert await connection.fetchval("SELECT f()") == 1
                await connection.execute("ALTER FUNCTION f() RENAME TO g")  # its owner now
            finally:
                await connection.close()
    finally:
        postgres.stop(locked)
