"""The whole local system: the infrastructure, then every service and the simulated producers.

Services register themselves through the ``npo.services`` entry point group (name → their
settings class), so this module starts ``npo-<name>`` processes without importing a service:
it reads each one's HTTP port from its settings, starts it detached (pid and log files in the
state dir), and waits for its ``/health`` answer.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from rich.console import Console

from npo_deploy import credentials, infra, processes
from npo_deploy.processes import LaunchError
from npo_platform import acl
from npo_platform.settings import PlatformSettings

# Start order: the query service and the simulator call the others.
ORDER = ("index", "consent", "audit", "simulator", "query")
ROUTING_FILE = Path("services/query/routing.local.json")  # the local stack's routing table
# Reference data of the local stack, when present (a variable set in the environment wins).
LOCAL_FILES = {
    "QUERY_ROUTING_FILE": ROUTING_FILE,
    "INDEX_DIRECTORY_FILE": Path("services/index/directory.local.json"),  # `npo directory`
}
# Two server processes for the services on the request path: one core each.
# The local stack's simulated producers are on this machine: their routes may be loopback.
LOCAL_DEFAULTS = {"CONSENT_WORKERS": "2", "QUERY_WORKERS": "2", "QUERY_ALLOW_LOOPBACK_ROUTES": "true"}


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    riv_logical_address: str | None = None  # the address its RIV-TA responders answer to

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def command(self) -> list[str]:
        return [str(Path(sys.executable).parent / f"npo-{self.name}")]


def services() -> list[Service]:
    """Every installed service, in start order."""
    found = {e.name: e.load()() for e in entry_points(group="npo.services")}
    return [Service(name, found[name].http_port, getattr(found[name], "riv_logical_address", None))
            for name in sorted(found, key=_rank)]


def _rank(name: str) -> int:
    return ORDER.index(name) if name in ORDER else len(ORDER)


def _files(settings: PlatformSettings, service: Service) -> tuple[Path, Path]:
    run = settings.state_dir / "run"
    run.mkdir(parents=True, exist_ok=True)
    return run / f"{service.name}.log", run / f"{service.name}.pid"


def healthy(service: Service) -> bool:
    try:
        with urllib.request.urlopen(f"{service.url}/health", timeout=2) as answer:  # noqa: S310 - loopback
            return bool(answer.status == 200)
    except OSError:
        return False


def start(settings: PlatformSettings, service: Service, timeout: float = 60.0) -> bool:
    """Start ``service`` unless it runs; False when it was already running."""
    log, pid = _files(settings, service)
    if processes.find_process(pid, service.command[0]) is not None and healthy(service):
        return False
    for variable, value in LOCAL_DEFAULTS.items():
        os.environ.setdefault(variable, value)
    for variable, path in LOCAL_FILES.items():
        if path.exists():
            os.environ.setdefault(variable, str(path.resolve()))
    started = processes.spawn_detached(service.command, log, pid, environment(settings, service))

    def alive() -> bool:  # the child itself: until it has exec'd, its command line is ours
        return processes.spawned_alive(started)

    if not processes.wait_until(lambda: healthy(service), alive, timeout):
        raise LaunchError(f"{service.name} (pid {started}) did not become healthy:\n"
                          f"{processes.log_tail(log)}")
    return True


def environment(settings: PlatformSettings, service: Service) -> dict[str, str]:
    """This process's environment with the service's own credentials for the local stack's
    broker and database: its Kafka principal and its database role (the simulated producers
    publish as the producers' principal). Servers named by the environment bring their own."""
    env = dict(os.environ)
    secrets = infra.secrets_dir(settings)
    principal = next((p for p in acl.SERVICES if p.name == f"npo-{service.name}"), None)
    if infra.local_kafka(settings) is not None:
        env.update(credentials.kafka_env(secrets, (principal or acl.PRODUCER).name))
    if (database := infra.local_postgres(settings)) is not None and principal is not None:
        env["DATABASE_URL"] = database.url_for(credentials.service_role(principal), database.database)
    return env


def stop(settings: PlatformSettings, service: Service) -> bool:
    """Stop ``service``; False when it was not running."""
    _, pid = _files(settings, service)
    process = processes.find_process(pid, service.command[0])
    if process is None:
        return False
    processes.terminate(process, timeout=20)
    pid.unlink(missing_ok=True)
    return True


def up(settings: PlatformSettings, console: Console) -> list[Service]:
    """Start every service that is not running yet, printing each as it comes up."""
    started = []
    for service in services():
        with console.status(f"Starting {service.name}…"):
            fresh = start(settings, service)
        console.print(f"{service.name:<10} {'started' if fresh else 'already running'}  {service.url}")
        started.append(service)
    return started


def down(settings: PlatformSettings, console: Console) -> None:
    for service in reversed(services()):
        console.print(f"{service.name:<10} {'stopped' if stop(settings, service) else 'was not running'}")
