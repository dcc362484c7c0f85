"""Pytest plugin: session-wide real Kafka and PostgreSQL (environment, testcontainers or local)."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import shutil
import socket
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import pytest
import uvicorn

from npo_deploy import credentials, kafka, postgres, processes
from npo_deploy.fhir_validator import FhirValidator, running_validator
from npo_deploy.infra import secrets_dir
from npo_deploy.kafka import LocalCluster, LocalKafka
from npo_deploy.postgres import LocalPostgres
from npo_platform.kafka_admin import ensure_topics
from npo_platform.settings import PlatformSettings

# Images for the Docker path (a laptop with an engine); this machine has none to try them on.
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"  # Apache Kafka 3.9, KRaft via testcontainers
POSTGRES_IMAGE = "postgres:18"


class TopicFactory(Protocol):
    """Creates a topic unique to the calling test and returns its name."""

    def __call__(self, partitions: int = 3) -> str: ...


def docker_available() -> bool:
    """Whether a Docker engine answers within a couple of seconds."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not _unix_socket_answers(host.removeprefix("unix://")):
        return False  # the usual no-engine case, decided without the slow docker client
    return _docker_ping()


def _unix_socket_answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(path) == 0


def _docker_ping() -> bool:
    # docker's Unix transport leaks its socket when a connect fails; the ResourceWarning
    # that leak raises must not fail strict test runs, so collect it here, silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker  # type: ignore[import-untyped]  # slow; no stubs pinned

            client = docker.from_env(timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:  # any failure (no socket, no permission, no engine) means no Docker
            return False
        finally:
            gc.collect()


def pytest_configure(config: pytest.Config) -> None:
    """The tests' Kafka clients authenticate as the administrator of the brokers this checkout
    launches (locked like the local stack's), unless the environment names a broker (and its
    credentials) of its own or a Docker engine runs the broker."""
    if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ and not docker_available():
        credentials.use_admin(secrets_dir(PlatformSettings()))


@pytest.fixture(scope="session")
def kafka_bootstrap_servers() -> Iterator[str]:
    """A broker for the session: KAFKA_BOOTSTRAP_SERVERS, a container or a local broker."""
    if bootstrap := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield bootstrap
    elif docker_available():
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield container.get_bootstrap_server()
    else:
        with scratch_kafka("npo-kafka-") as bootstrap:
            yield bootstrap


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database for the session: DATABASE_URL, a container or a local server."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
    elif docker_available():
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer(POSTGRES_IMAGE, driver=None) as container:
            yield container.get_connection_url()
    else:
        with scratch_postgres("npo-postgres-") as url:
            yield url


def isolated_kafka(home: Path) -> LocalKafka:
    """A broker in ``home`` on free ports, sharing the project's jar cache (no re-download)."""
    [node] = isolated_kafka_cluster(home, nodes=1).nodes
    return node


def isolated_kafka_cluster(home: Path, nodes: int = 3) -> LocalCluster:
    """``nodes`` Kafka nodes making one cluster in ``home``, on free ports, sharing the
    project's jar cache."""
    settings = PlatformSettings()
    libs = settings.state_dir.resolve() / "kafka" / "libs"
    ports = [(processes.free_port(), processes.free_port()) for _ in range(nodes)]
    return kafka.cluster(home, ports, libs, secrets_dir(settings))


def isolated_postgres(home: Path) -> LocalPostgres:
    """A PostgreSQL server in ``home`` on a free port."""
    return LocalPostgres(home=home, port=processes.free_port(), secrets=secrets_dir(PlatformSettings()))


@contextmanager
def scratch_kafka(prefix: str) -> Iterator[str]:
    """A broker started in a fresh scratch directory; its bootstrap address. Stopped and removed
    afterwards."""
    with scratch_dir(prefix) as home:
        broker = isolated_kafka(home / "kafka")
        kafka.start(broker)
        try:
            yield broker.bootstrap
        finally:
            kafka.stop(broker)


@contextmanager
def scratch_kafka_cluster(prefix: str, nodes: int = 3) -> Iterator[LocalCluster]:
    """A cluster of ``nodes`` started in a fresh scratch directory. Stopped and removed
    afterwards (whichever of its nodes still run)."""
    with scratch_dir(prefix) as home:
        local = isolated_kafka_cluster(home / "kafka", nodes)
        try:
            kafka.start_cluster(local)
            yield local
        finally:
            kafka.stop_cluster(local)


@pytest.fixture(scope="module")
def kafka_cluster() -> Iterator[LocalCluster]:
    """A three-node cluster of the test module's own (its nodes may be killed and restarted:
    ``kafka.kill``, ``kafka.start``)."""
    with scratch_kafka_cluster("npo-kafka-cluster-") as nodes:
        yield nodes


@contextmanager
def scratch_postgres(prefix: str) -> Iterator[str]:
    """A PostgreSQL server started in a fresh scratch directory; its URL. Stopped and removed
    afterwards."""
    with scratch_dir(prefix) as home:
        server = isolated_postgres(home / "postgres")
        postgres.start(server)
        try:
            yield server.url
        finally:
            postgres.stop(server)


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory under the system temp dir, removed afterwards.

    PostgreSQL runs as another user when we are root, so its folder's parents must stay
    traversable; pytest's base temp dir is reset to 0700 by every pytest session that starts.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


_validators: list[FhirValidator] = []
_validated: list[str] = []  # a line per test that reported what it validated


def report_validated(test: str, resources: int) -> None:
    """Tell the session's summary that ``test`` validated ``resources`` (with their Bundle
    entries) and found no error: call it after the test's last assertion."""
    _validated.append(f"{test}: {resources} FHIR resources validated, 0 errors")


@pytest.fixture(scope="session")
def fhir_validator() -> Iterator[FhirValidator]:
    """HAPI FHIR's validator (R4 core definitions, offline) for the session, in one JVM.

    ``fhir_validator.errors(resource)`` lists what makes a resource invalid; the jars and the
    runner are fetched and compiled into the state dir on first use."""
    with running_validator(PlatformSettings().state_dir.resolve() / "fhir-validator") as validator:
        _validators.append(validator)
        yield validator


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for validator in _validators:
        terminalreporter.write_line(
            f"HAPI FHIR validator: {validator.documents} documents validated, "
            f"{validator.resources} resources with their Bundle entries"
        )
    for line in _validated:
        terminalreporter.write_line(line)


@pytest.fixture
def kafka_topic_factory(kafka_bootstrap_servers: str, request: pytest.FixtureRequest) -> TopicFactory:
    """``new_topic(partitions=3) -> name``: creates a topic unique to this test."""
    prefix = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:150]

    def new_topic(partitions: int = 3) -> str:
        name = f"test.{prefix}.{uuid.uuid4().hex[:8]}"
        ensure = ensure_topics(kafka_bootstrap_servers, [name], partitions=partitions)
        processes.run_async(ensure)
        return name

    return new_topic


@pytest.fixture
def served_options(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What a service's ``run()`` hands uvicorn through the platform's ``serve`` (``app`` and
    the options), filled in when it is called; nothing is served."""
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    return served


@pytest.fixture
def collector_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``"freeze"`` is appended at each ``gc.freeze()``; neither it nor ``gc.set_threshold``
    touches the test process's collector."""
    calls: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "set_threshold", lambda *thresholds: None)
    return calls


@asynccontextmanager
async def serve(app: Any, **options: Any) -> AsyncIterator[str]:
    """``app`` under a real uvicorn; yields its base URL. ``options`` override the uvicorn config
    (default: quiet, a free loopback port, open connections cut 3 s into the shutdown)."""
    config: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "log_level": "warning",
                              # open event streams would otherwise hold the shutdown forever
                              "timeout_graceful_shutdown": 3, **options}
    server = uvicorn.Server(uvicorn.Config(app, **config))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
