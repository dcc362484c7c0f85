"""Schema-pinned pools and versioned migrations, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from npo_platform.db import MigrationError, apply_migrations, create_pool, load_migrations

MakePackage = Callable[[dict[str, str]], str]

ENGAGEMENTS = {
    "0001_engagements.sql": "CREATE TABLE engagements (id int PRIMARY KEY, category text);",
    "0002_seed.sql": "INSERT INTO engagements VALUES (1, 'voo'), (2, 'dia');",
    "0003_producer.sql": "ALTER TABLE engagements ADD COLUMN producer text DEFAULT 'x';",
}


@pytest.fixture
def schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakePackage:
    """Writes an importable package of SQL files under tmp_path and returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(files: dict[str, str]) -> str:
        name = f"migrations_{uuid.uuid4().hex[:8]}"
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
        for file_name, sql in files.items():
            (tmp_path / name / file_name).write_text(sql)
        return name

    return make


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


async def ledger(conn: Any, schema: str) -> list[tuple[int, str, str]]:
    rows = await conn.fetch(
        f'SELECT version, name, checksum FROM "{schema}".schema_migrations ORDER BY version'  # noqa: S608
    )
    return [(row["version"], row["name"], row["checksum"]) for row in rows]


async def schema_exists(conn: Any, schema: str) -> bool:
    found = await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)
    return found is not None


@pytest.mark.integration
async def test_applies_files_in_version_order_and_records_them(
    database_url: str, conn: Any, schema: str, make_package: MakePackage
) -> None:
    package = make_package(dict(reversed(ENGAGEMENTS.items())))

    assert await apply_migrations(database_url, schema=schema, package=package) == [1, 2, 3]

    rows = await conn.fetch(f'SELECT id, producer FROM "{schema}".engagements ORDER BY id')  # noqa: S608
    assert [tuple(row) for row in rows] == [(1, "x"), (2, "x")]
    assert await ledger(conn, schema) == [
        (version, name, hashlib.sha256(sql.encode()).hexdigest())
        for version, (name, sql) in enumerate(ENGAGEMENTS.items(), start=1)
    ]


@pytest.mark.integration
async def test_second_run_applies_nothing_and_a_new_file_applies_alone(
    database_url: str, conn: Any, schema: str, make_package: MakePackage, tmp_path: Path
) -> None:
    package = make_package(dict(list(ENGAGEMENTS.items())[:2]))
    assert await apply_migrations(database_url, schema=schema, package=package) == [1, 2]
    before = await conn.fetch(f'SELECT * FROM "{schema}".schema_migrations')  # noqa: S608

    assert await apply_migrations(database_url, schema=schema, package=package) == []
    assert await conn.fetch(f'SELECT * FROM "{schema}".schema_migrations') == before  # noqa: S608

    (tmp_path / package / "0003_producer.sql").write_text(ENGAGEMENTS["0003_producer.sql"])
    assert await apply_migrations(database_url, schema=schema, package=package) == [3]


@pytest.mark.integration
async def test_an_edited_applied_file_refuses_to_start(
    database_url: str, conn: Any, schema: str, make_package: MakePackage, tmp_path: Path
) -> None:
    package = make_package({"0001_engagements.sql": ENGAGEMENTS["0001_engagements.sql"]})
    await apply_migrations(database_url, schema=schema, package=package)
    (tmp_path / package / "0001_engagements.sql").write_text("CREATE TABLE other (id int);")
    (tmp_path / package / "0002_seed.sql").write_text(ENGAGEMENTS["0002_seed.sql"])

    with pytest.raises(MigrationError, match=r"0001_engagements\.sql differs"):
        await apply_migrations(database_url, schema=schema, package=package)

    assert [version for version, _, _ in await ledger(conn, schema)] == [1]


@pytest.mark.integration
@pytest.mark.parametrize(
    "file_name", ["1_init.sql", "00001_init.sql", "0001-init.sql", "0001_Init.sql", "0001_.sql"]
)
async def test_a_badly_named_file_refuses_to_start_before_touching_the_database(
    database_url: str, conn: Any, schema: str, make_package: MakePackage, file_name: str
) -> None:
    package = make_package({"0001_ok.sql": "SELECT 1;", file_name: "SELECT 1;"})

    with pytest.raises(MigrationError, match=r"NNNN_lowercase_name\.sql"):
        await apply_migrations(database_url, schema=schema, package=package)

    assert not await schema_exists(conn, schema)


@pytest.mark.parametrize(
    ("file_names", "problem"),
    [
        (["0001_a.sql", "0001_b.sql", "0002_c.sql"], r"more than one file for version\(s\) \[1\]"),
        (["0001_a.sql", "0003_c.sql"], "without gaps"),
        (["0002_b.sql"], "without gaps"),
    ],
)
def test_duplicated_or_missing_versions_are_refused(
    make_package: MakePackage, file_names: list[str], problem: str
) -> None:
    package = make_package(dict.fromkeys(file_names, "SELECT 1;"))

    with pytest.raises(MigrationError, match=problem):
        load_migrations(package)


def test_files_other_than_sql_are_ignored(make_package: MakePackage) -> None:
    package = make_package({"0001_a.sql": "SELECT 1;", "README.md": "notes"})

    assert [migration.name for migration in load_migrations(package)] == ["0001_a.sql"]


@pytest.mark.integration
@pytest.mark.parametrize("via", ["dsn", "pool"])
async def test_replicas_starting_together_apply_each_version_once(
    database_url: str, conn: Any, schema: str, make_package: MakePackage, via: str
) -> None:
    package = make_package(
        {
            "0001_log.sql": "CREATE TABLE runs (version int); SELECT pg_sleep(0.2);",
            "0002_a.sql": "INSERT INTO runs VALUES (2);",
            "0003_b.sql": "INSERT INTO runs VALUES (3);",
        }
    )
    async with await create_pool(database_url, schema=schema, min_size=3, max_size=3) as pool:
        target = database_url if via == "dsn" else pool
        results = await asyncio.gather(
            *(apply_migrations(target, schema=schema, package=package) for _ in range(3))
        )

    assert sorted(results) == [[], [], [1, 2, 3]]
    runs = await conn.fetch(f'SELECT version FROM "{schema}".runs ORDER BY version')  # noqa: S608
    assert [row["version"] for row in runs] == [2, 3]
    assert len(await ledger(conn, schema)) == 3


@pytest.mark.integration
async def test_unqualified_names_land_in_the_pool_schema(database_url: str, conn: Any, schema: str) -> None:
    async with await create_pool(database_url, schema=schema, min_size=1, max_size=2) as pool:
        await pool.execute(f'CREATE SCHEMA "{schema}"')
        await pool.execute("CREATE TABLE things (id int)")
        await pool.execute("INSERT INTO things VALUES (7)")

        assert await pool.fetchval("SELECT current_schema()") == schema
    assert await conn.fetchval(f'SELECT id FROM "{schema}".things') == 7  # noqa: S608
    assert await conn.fetchval("SELECT to_regclass('public.things')") is None


@pytest.mark.integration
async def test_a_released_connection_is_rolled_back_without_a_reset_round_trip(
    database_url: str, schema: str
) -> None:
    """asyncpg's default reset sends RESET ALL and more on every release (a round trip per
    FindContent); these pools keep the session, but an open transaction is still undone."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda *_: None)  # asyncpg reports the open one
    try:
        async with await create_pool(database_url, schema=schema, min_size=1, max_size=1) as pool:
            await pool.execute(f'CREATE SCHEMA "{schema}"')
            await pool.execute("CREATE TABLE things (id int)")
            sent: list[str] = []
            async with pool.acquire() as connection:
                connection.add_query_logger(lambda record: sent.append(record.query))
                left_open = connection.transaction()
                await left_open.start()
                await connection.execute("INSERT INTO things VALUES (1)")
            async with pool.acquire() as again:
                assert not again.is_in_transaction()
                assert await again.fetchval("SELECT count(*) FROM things") == 0
                assert await again.fetchval("SELECT current_schema()") == schema
    finally:  # the loop is the session's: later tests keep the default handler
        loop.set_exception_handler(None)
    assert "ROLLBACK" in sent
    assert not [query for query in sent if "RESET ALL" in query]


@pytest.mark.integration
async def test_each_schema_keeps_its_own_tables_and_ledger(
    database_url: str, make_package: MakePackage
) -> None:
    index, query = f"index_{uuid.uuid4().hex[:8]}", f"query_{uuid.uuid4().hex[:8]}"
    package = make_package(dict(list(ENGAGEMENTS.items())[:1]))
    for schema in (index, query):
        assert await apply_migrations(database_url, schema=schema, package=package) == [1]

    async with (
        await create_pool(database_url, schema=index, max_size=1) as index_pool,
        await create_pool(database_url, schema=query, max_size=1) as query_pool,
    ):
        await index_pool.execute("INSERT INTO engagements VALUES (1, 'voo')")

        assert await index_pool.fetchval("SELECT count(*) FROM engagements") == 1
        assert await query_pool.fetchval("SELECT count(*) FROM engagements") == 0


@pytest.mark.integration
async def test_versions_applied_by_a_newer_release_are_tolerated(
    database_url: str, schema: str, make_package: MakePackage
) -> None:
    newer = make_package(dict(list(ENGAGEMENTS.items())[:2]))
    older = make_package(dict(list(ENGAGEMENTS.items())[:1]))
    await apply_migrations(database_url, schema=schema, package=newer)

    assert await apply_migrations(database_url, schema=schema, package=older) == []


@pytest.mark.integration
async def test_a_pending_file_older_than_the_applied_ones_refuses_to_start(
    database_url: str, conn: Any, schema: str, make_package: MakePackage
) -> None:
    package = make_package(dict(list(ENGAGEMENTS.items())[:2]))
    await apply_migrations(database_url, schema=schema, package=package)
    await conn.execute(f'DELETE FROM "{schema}".schema_migrations WHERE version = 1')  # noqa: S608

    with pytest.raises(MigrationError, match=r"0001_engagements\.sql is older than applied 2"):
        await apply_migrations(database_url, schema=schema, package=package)


@pytest.mark.integration
async def test_the_init_hook_runs_for_every_new_connection(database_url: str, schema: str) -> None:
    seen: list[int] = []

    async def init(connection: Any) -> None:
        seen.append(await connection.fetchval("SELECT pg_backend_pid()"))

    async with await create_pool(database_url, schema=schema, min_size=2, max_size=2, init=init):
        assert len(set(seen)) == 2


@pytest.mark.integration
async def test_create_pool_waits_for_a_server_that_refuses_at_first(
    database_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_create_pool, attempts = asyncpg.create_pool, []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionRefusedError("not yet")
        return real_create_pool(*args, **kwargs)

    monkeypatch.setattr(asyncpg, "create_pool", flaky)
    async with await create_pool(database_url, schema=schema, max_size=1) as pool:
        assert await pool.fetchval("SELECT 1") == 1
    assert len(attempts) == 3


async def test_create_pool_gives_up_after_its_start_timeout() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()

    with pytest.raises(OSError, match=r"refused|Connect call failed"):
        await create_pool(f"postgresql://npo@127.0.0.1:{port}/npo", schema="x", start_timeout=0.5)

    assert 0.5 <= time.monotonic() - started < 5


@pytest.mark.parametrize("bad", ["Index", "pg_index", "a-b", 'x"; DROP', ""])
async def test_unsafe_schema_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="schema name"):
        await create_pool("postgresql://unused", schema=bad)
