"""PostgreSQL plumbing: connection pools pinned to a service's schema, and versioned SQL migrations.

The migration runner is the project's own, on purpose. yoyo-migrations, the smallest library
that would replace it, keeps the per-service schema (its PostgreSQL backend takes ``schema=``)
but would lose two things this runner guarantees: its lock is a row in a lock table, which a
replica killed mid-migration leaves behind, so every later start waits and then fails until
someone runs ``yoyo break-lock`` (an advisory lock ends with its session); and it knows an applied
migration by its id only, so an applied file edited afterwards goes unnoticed (this runner
refuses to start). It would also bring a synchronous driver (psycopg) into asyncio services.
Alembic needs SQLAlchemy and leaves the advisory lock and the per-schema ledger to hand-written
``env.py`` code all the same.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

# No stubs are pinned for asyncpg yet; adding asyncpg-stubs to requirements/dev.txt would type it.
import asyncpg
from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

_log = logging.getLogger(__name__)

# "Not accepting connections yet": refused TCP, a Unix socket not created yet, or a server that
# is still starting up. Anything else (bad password, unknown database) fails at once.
_NOT_UP_YET = (ConnectionRefusedError, FileNotFoundError, asyncpg.CannotConnectNowError)
_SCHEMA_NAME = re.compile(r"(?!pg_)[a-z_][a-z0-9_]{0,62}")
_MIGRATION_FILE = re.compile(r"(\d{4})_[a-z0-9][a-z0-9_]*\.sql")



class ConnectionInit(Protocol):
    """Called once for every new pool connection (register codecs, set session state)."""

    async def __call__(self, connection: asyncpg.Connection[asyncpg.Record], /) -> None: ...

"""Called with each new connection of a pool (asyncpg's ``init``), e.g. to register codecs."""


class MigrationError(RuntimeError):
    """The migration files or the schema's migration ledger are not in a state to start from."""


@dataclass(frozen=True)
class Migration:
    """One ``NNNN_name.sql`` file: the statements that take a schema to ``version``."""

    version: int
    name: str
    sql: str
    checksum: str


async def create_pool(
    database_url: str,
    *,
    schema: str,
    min_size: int = 1,
    max_size: int = 10,
    init: ConnectionInit | None = None,
    start_timeout: float = 30.0,
) -> asyncpg.Pool:
    """A pool whose connections resolve unqualified names in ``schema``; waits for a starting server."""
    settings = {"search_path": _quoted(schema)}
    async for attempt in _startup_retries(start_timeout):
        with attempt:
            return await asyncpg.create_pool(
                database_url,
                min_size=min_size,
                max_size=max_size,
                init=init,
                reset=_keep_session,
                server_settings=settings,
            )
    raise AssertionError("unreachable: tenacity re-raises the last error")


async def _keep_session(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """The pool's reset on release: nothing beyond what asyncpg always does (roll back a
    transaction left open, forget listeners).

    asyncpg's default also sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release: a round trip per request on a FindContent. These pools hold
    no session state to undo: ``search_path`` is a startup setting (what RESET ALL returns
    to), advisory locks are taken per transaction (``pg_advisory_xact_lock``), cursors live in
    transactions, and LISTEN has a connection of its own (the audit stream). Code that sets
    session state on a pooled connection must undo it itself.
    """


def load_migrations(package: str) -> list[Migration]:
    """The ``.sql`` files of ``package`` (e.g. ``npo_index.migrations``) in version order."""
    found = [
        _parse(entry.name, entry.read_bytes())
        for entry in resources.files(package).iterdir()
        if entry.is_file() and entry.name.endswith(".sql")
    ]
    found.sort(key=lambda migration: migration.version)
    _check_numbering(package, [migration.version for migration in found])
    return found


async def apply_migrations(pool_or_dsn: asyncpg.Pool | str, *, schema: str, package: str) -> list[int]:
    """Bring ``schema`` up to date with ``package``'s migrations; returns the versions applied now.

    Replicas starting together serialise on an advisory lock, so each file runs once; each file
    runs in its own transaction together with its ledger row.
    """
    _quoted(schema)  # reject a bad name before touching the database
    migrations = load_migrations(package)
    async with _connection(pool_or_dsn) as conn, _migration_lock(conn, schema):
        await _ensure_ledger(conn, schema)
        applied = await _applied(conn, schema)
        pending = _pending(schema, migrations, applied)
        for migration in pending:
            await _apply(conn, schema, migration)
    return [migration.version for migration in pending]


def _startup_retries(timeout: float) -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception_type(_NOT_UP_YET),
        stop=stop_after_delay(timeout),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        before_sleep=before_sleep_log(_log, logging.WARNING),
        reraise=True,
    )


def _quoted(schema: str) -> str:
    # Validated rather than escaped: the name is spliced into DDL and into search_path.
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"schema name {schema!r} must be a lowercase identifier not starting pg_")
    return f'"{schema}"'


def _parse(file_name: str, content: bytes) -> Migration:
    match = _MIGRATION_FILE.fullmatch(file_name)
    if match is None:
        raise MigrationError(f"{file_name}: migration files are named NNNN_lowercase_name.sql")
    checksum = hashlib.sha256(content).hexdigest()
    return Migration(int(match[1]), file_name, content.decode("utf-8"), checksum)


def _check_numbering(package: str, versions: list[int]) -> None:
    duplicated = sorted({version for version in versions if versions.count(version) > 1})
    if duplicated:
        raise MigrationError(f"{package}: more than one file for version(s) {duplicated}")
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"{package}: versions must run 1, 2, 3 … without gaps, found {versions}")


def _pending(
    schema: str, migrations: list[Migration], applied: dict[int, tuple[str, str]]
) -> list[Migration]:
    _check_unchanged(schema, migrations, applied)
    pending = [migration for migration in migrations if migration.version not in applied]
    if pending and applied and pending[0].version < max(applied):
        raise MigrationError(f"{schema}: {pending[0].name} is older than applied {max(applied)}")
    newer = sorted(set(applied) - {migration.version for migration in migrations})
    if newer:
        # A newer release migrated already (rolling deploy): its additions must stay compatible.
        _log.warning("schema %s has versions %s newer than this release knows", schema, newer)
    return pending


def _check_unchanged(schema: str, migrations: list[Migration], applied: dict[int, tuple[str, str]]) -> None:
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != (migration.name, migration.checksum):
            raise MigrationError(
                f"{schema}: {migration.name} differs from the applied {recorded[0]} "
                f"(sha256 {recorded[1][:12]}…); never edit an applied migration, add a new one"
            )


@asynccontextmanager
async def _connection(pool_or_dsn: asyncpg.Pool | str) -> AsyncIterator[Any]:
    if not isinstance(pool_or_dsn, str):
        async with pool_or_dsn.acquire() as conn:
            yield conn
        return
    connect = None
    async for attempt in _startup_retries(30.0):
        with attempt:
            connect = await asyncpg.connect(pool_or_dsn)
    assert connect is not None  # tenacity re-raises when every attempt failed
    try:
        yield connect
    finally:
        await connect.close()


@asynccontextmanager
async def _migration_lock(conn: Any, schema: str) -> AsyncIterator[None]:
    digest = hashlib.sha256(f"npo_platform.db.migrations:{schema}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    await conn.execute("SELECT pg_advisory_lock($1)", key)
    try:
        yield
    finally:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", key)


async def _ensure_ledger(conn: Any, schema: str) -> None:
    # A service's role owns its schema but may not create one (CREATE on the database), and
    # CREATE SCHEMA IF NOT EXISTS asks for that right even when the schema exists.
    if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quoted(schema)}")
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {_quoted(schema)}.schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )


async def _applied(conn: Any, schema: str) -> dict[int, tuple[str, str]]:
    rows = await conn.fetch(
        f"SELECT version, name, checksum FROM {_quoted(schema)}.schema_migrations"  # noqa: S608
    )
    return {row["version"]: (row["name"], row["checksum"]) for row in rows}


async def _apply(conn: Any, schema: str, migration: Migration) -> None:
    async with conn.transaction():
        # SET LOCAL: unqualified names in the file land in the schema, whatever the pool's setting.
        await conn.execute(f"SET LOCAL search_path TO {_quoted(schema)}")
        await conn.execute(migration.sql)
        await conn.execute(
            f"INSERT INTO {_quoted(schema)}.schema_migrations (version, name, checksum)"  # noqa: S608
            " VALUES ($1, $2, $3)",
            migration.version,
            migration.name,
            migration.checksum,
        )
    _log.info("applied migration %s to schema %s", migration.name, schema)
