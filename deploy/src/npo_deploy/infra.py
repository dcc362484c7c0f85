"""Starts, stops and reports the local stack (Kafka broker, embedded PostgreSQL) in the state dir."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console

from npo_deploy import kafka, postgres, processes
from npo_deploy.kafka import LocalCluster
from npo_deploy.postgres import LocalPostgres
from npo_platform.kafka_admin import ensure_platform_topics
from npo_platform.settings import (
    LOCAL_DATABASE_URL,
    PlatformSettings,
    local_kafka_bootstrap,
    local_kafka_ports,
)


@dataclass(frozen=True)
class Component:
    """What ``npo infra status`` knows about one piece of infrastructure."""

    name: str
    address: str
    local: bool  # False: an external server named by the environment; never started here
    running: bool | None  # None for an external server: no process of ours to look at
    reachable: bool


def local_kafka(settings: PlatformSettings) -> LocalCluster | None:
    """The Kafka nodes to launch (KAFKA_NODES of them), or None when KAFKA_BOOTSTRAP_SERVERS
    names another cluster. One node lives in ``kafka/``, a cluster in ``kafka-<n>/node-<i>``;
    all share the jars in ``kafka/libs``."""
    nodes = settings.kafka_nodes
    if settings.kafka_bootstrap_servers != local_kafka_bootstrap(nodes):
        return None
    home = settings.state_dir / ("kafka" if nodes == 1 else f"kafka-{nodes}")
    return kafka.cluster(home, local_kafka_ports(nodes), settings.state_dir / "kafka" / "libs",
                         secrets_dir(settings))


def local_postgres(settings: PlatformSettings) -> LocalPostgres | None:
    """The database server to launch, or None when DATABASE_URL names another one."""
    server = LocalPostgres(home=settings.state_dir / "postgres", secrets=secrets_dir(settings))
    return server if settings.database_url in (LOCAL_DATABASE_URL, server.url) else None


def secrets_dir(settings: PlatformSettings) -> Path:
    """Where the local stack keeps its generated passwords (``credentials``)."""
    return settings.state_dir.resolve() / "secrets"


def up(settings: PlatformSettings, console: Console) -> dict[str, bool]:
    """Start what is local and not yet running; per component, whether this call started it."""
    broker, database = local_kafka(settings), local_postgres(settings)
    if broker is not None:
        kafka.ensure_jars(broker.nodes[0].libs, console)  # before the spinner: its own progress
    with console.status("Starting Kafka and PostgreSQL…"):
        started = _both(
            (lambda: kafka.start_cluster(broker)) if broker else None,
            (lambda: postgres.start(database)) if database else None,
        )
        if broker is not None:
            processes.run_async(ensure_platform_topics(broker.bootstrap))
    return started


def down(settings: PlatformSettings) -> dict[str, bool]:
    """Stop what is local; per component, whether it was running."""
    broker, database = local_kafka(settings), local_postgres(settings)
    return _both(
        (lambda: kafka.stop_cluster(broker)) if broker else None,
        (lambda: postgres.stop(database)) if database else None,
    )


def _both(on_kafka: Callable[[], bool] | None, on_postgres: Callable[[], bool] | None) -> dict[str, bool]:
    """Run the two components' actions concurrently (Kafka's JVM start dominates)."""
    actions = {"kafka": on_kafka, "postgres": on_postgres}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(act) for name, act in actions.items() if act is not None}
        return {name: future.result() for name, future in futures.items()}


def status(settings: PlatformSettings) -> list[Component]:
    broker, database = local_kafka(settings), local_postgres(settings)
    bootstrap, url = settings.kafka_bootstrap_servers, settings.database_url
    return [
        Component(
            "kafka",
            bootstrap,
            local=broker is not None,
            running=None if broker is None else kafka.running(broker),
            reachable=kafka.is_reachable(bootstrap),
        ),
        Component(
            "postgres",
            _without_password(url),
            local=database is not None,
            running=None if database is None else postgres.is_running(database),
            reachable=postgres.is_reachable(url),
        ),
    ]


def _without_password(url: str) -> str:
    password = urlsplit(url).password
    return url.replace(f":{password}@", ":***@") if password else url
