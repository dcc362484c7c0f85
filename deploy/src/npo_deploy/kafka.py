"""A real single-node Apache Kafka broker (KRaft) run from Maven Central jars, without Docker."""

from __future__ import annotations

import subprocess
import uuid
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import psutil
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from rich.console import Console

from npo_deploy import maven, processes
from npo_deploy.processes import LOOPBACK, LaunchError
from npo_platform.settings import LOCAL_KAFKA_CONTROLLER_PORT, LOCAL_KAFKA_PORT

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
_MAIN_CLASS = "kafka.Kafka"


@dataclass(frozen=True)
class LocalKafka:
    """One local broker: the folder holding its config, data, log and pid, and its ports."""

    home: Path
    port: int = LOCAL_KAFKA_PORT
    controller_port: int = LOCAL_KAFKA_CONTROLLER_PORT
    libs_dir: Path | None = None  # default home/libs; tests point at the project's cache
    partitions: int = 3
    heap_max: str = "512m"

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def libs(self) -> Path:
        return self.libs_dir or self.home / "libs"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.home / "log4j2.xml"

    @property
    def log_file(self) -> Path:
        return self.home / "kafka.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"


def ensure_jars(libs: Path, console: Console | None = None) -> Path:
    """Fetch the broker's jars with Maven into ``libs`` once; later calls reuse them."""
    return maven.ensure_jars(libs, "kafka-pom.xml", _jars_id(), f"Apache Kafka {KAFKA_VERSION}", console)


def _jars_id() -> str:
    return f"kafka_2.13-{KAFKA_VERSION} log4j-{LOG4J_VERSION}"


def _require(tool: str) -> None:
    maven.require(tool, "the local Kafka broker")


def server_properties(broker: LocalKafka) -> str:
    """Single-node KRaft: this process is broker and sole controller; internal topics at RF 1.

    A static voter list (``controller.quorum.voters``) rather than ``--standalone``'s dynamic
    quorum keeps the stored metadata independent of the controller port.
    """
    controller = f"{LOOPBACK}:{broker.controller_port}"
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{controller}",
        "controller.listener.names": "CONTROLLER",
        "listeners": f"PLAINTEXT://{broker.bootstrap},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{broker.bootstrap}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(broker.data_dir.resolve()),
        "num.partitions": str(broker.partitions),
        "auto.create.topics.enable": "false",  # topics come from ensure_topics, names checked
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _write_config(broker: LocalKafka) -> None:
    broker.home.mkdir(parents=True, exist_ok=True)
    broker.properties_file.write_text(server_properties(broker))
    broker.log4j_file.write_text((files("npo_deploy") / "kafka-log4j2.xml").read_text())


def _java(broker: LocalKafka, main: str, *args: str) -> list[str]:
    return ["java", "-Xms256m", f"-Xmx{broker.heap_max}", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={broker.log4j_file.resolve()}",
            "-cp", str(broker.libs.resolve() / "*"), main, *args]  # fmt: skip


def new_cluster_id() -> str:
    """A random KRaft cluster id: a UUID in unpadded base64url, as Kafka's own tools make it."""
    return urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _format_storage(broker: LocalKafka) -> None:
    """Format the data dir once; a formatted dir (meta.properties) is reused as is."""
    if (broker.data_dir / "meta.properties").exists():
        return
    # "--cluster-id=" with the value attached: a base64url id may start with "-", which the
    # tool's argument parser would otherwise read as an option (1 start in 64 failed so).
    command = _java(broker, "kafka.tools.StorageTool", "format",
                    f"--cluster-id={new_cluster_id()}", "-c", str(broker.properties_file))  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LaunchError(f"Kafka storage format failed:\n{result.stdout}{result.stderr}")


def find(broker: LocalKafka) -> psutil.Process | None:
    """The running broker process of ``broker``, if any."""
    return processes.find_process(broker.pid_file, str(broker.properties_file.resolve()))


def start(broker: LocalKafka, timeout: float = 90.0, console: Console | None = None) -> bool:
    """Start the broker detached and wait for a metadata round trip; False if already up."""
    if (running := find(broker)) is not None:
        _wait_ready(broker, running, timeout)
        return False
    _require("java")
    ensure_jars(broker.libs, console)
    _check_ports_free(broker)
    _write_config(broker)
    _format_storage(broker)
    command = _java(broker, _MAIN_CLASS, str(broker.properties_file.resolve()))
    process = psutil.Process(processes.spawn_detached(command, broker.log_file, broker.pid_file))
    try:
        _wait_ready(broker, process, timeout)
    except LaunchError:
        processes.terminate(process, timeout=5)  # reap it if dead, do not leave it if hung
        broker.pid_file.unlink(missing_ok=True)
        raise
    return True


def _check_ports_free(broker: LocalKafka) -> None:
    for port in (broker.port, broker.controller_port):
        if processes.port_open(port):
            raise LaunchError(f"port {port} is already in use; is another broker running?")


def _wait_ready(broker: LocalKafka, process: psutil.Process, timeout: float) -> None:
    def ready() -> bool:
        return is_reachable(broker.bootstrap)

    if not processes.wait_until(ready, lambda: processes.is_alive(process), timeout):
        state = "is not ready" if processes.is_alive(process) else "died"
        tail = processes.log_tail(broker.log_file)
        raise LaunchError(f"Kafka at {broker.bootstrap} {state} ({broker.log_file}):\n{tail}")


def stop(broker: LocalKafka, timeout: float = 30.0) -> bool:
    """SIGTERM the broker, SIGKILL it after ``timeout`` s; False if it was not running."""
    process = find(broker)
    if process is None:
        return False
    processes.terminate(process, timeout)
    broker.pid_file.unlink(missing_ok=True)
    return True


def is_reachable(bootstrap: str, timeout_ms: int = 3000) -> bool:
    """Whether a broker at ``bootstrap`` answers a metadata request naming a live broker."""
    if not _accepts_tcp(bootstrap):
        return False  # spares aiokafka's connection-error log lines when nothing listens
    try:
        return processes.run_async(_count_brokers(bootstrap, timeout_ms)) > 0
    except (KafkaError, OSError):
        return False


def _accepts_tcp(bootstrap: str) -> bool:
    for endpoint in bootstrap.split(","):
        host, _, port = endpoint.strip().rpartition(":")
        if port.isdigit() and processes.port_open(int(port), host or LOOPBACK):
            return True
    return False


async def _count_brokers(bootstrap: str, timeout_ms: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        return len(cluster["brokers"])
    finally:
        await admin.close()
