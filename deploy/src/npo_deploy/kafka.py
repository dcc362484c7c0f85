"""Real Apache Kafka (KRaft) run from Maven Central jars, without Docker: one node, or a cluster
of nodes that are each broker and controller."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from base64 import urlsafe_b64encode
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import psutil
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import CreateAclsRequest
from rich.console import Console

from npo_deploy import credentials, maven, processes
from npo_deploy.processes import LOOPBACK, LaunchError
from npo_platform import acl
from npo_platform.settings import LOCAL_KAFKA_CONTROLLER_PORT, LOCAL_KAFKA_PORT, KafkaSecurity
from npo_platform.topics import replication_for

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
_MAIN_CLASS = "kafka.Kafka"


@dataclass(frozen=True)
class LocalKafka:
    """One local node: the folder holding its config, data, log and pid, and its ports.

    ``quorum`` holds the controller ports of every node of its cluster (node ids 1, 2, …
    in that order); empty for a node on its own.
    """

    home: Path
    port: int = LOCAL_KAFKA_PORT
    controller_port: int = LOCAL_KAFKA_CONTROLLER_PORT
    libs_dir: Path | None = None  # default home/libs; tests point at the project's cache
    partitions: int = 3
    heap_max: str = "512m"
    node_id: int = 1
    quorum: tuple[int, ...] = ()
    # Where the users' passwords are (credentials): SASL/SCRAM and ACLs. None only for a
    # throwaway broker that must speak PLAINTEXT (never the default of a launcher).
    secrets: Path | None = None

    @property
    def cluster_size(self) -> int:
        return max(1, len(self.quorum))

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


# Fast recovery. A node killed with kill -9 leaves its registration behind: the controller
# refuses the restarted node's new registration (DUPLICATE_BROKER_REGISTRATION) until the old
# one's heartbeat session expires, and only then fences a dead node and moves its partitions'
# leadership. With the default 9 s session that wait was most of a restarted single broker's
# start; heartbeats every 0.5 s keep a 3 s session safe against a busy machine's pauses.
RECOVERY_SETTINGS = {"broker.heartbeat.interval.ms": "500", "broker.session.timeout.ms": "3000"}


def server_properties(broker: LocalKafka) -> str:
    """KRaft, this process broker and controller; durability settings follow the cluster size.

    A node on its own has a static voter (``controller.quorum.voters``), which keeps its stored
    metadata independent of the controller port; a cluster's nodes find their quorum through
    ``controller.quorum.bootstrap.servers`` (its voters were set when it was formatted).
    """
    controller = f"{LOOPBACK}:{broker.controller_port}"
    replicas, min_isr = (str(n) for n in replication_for(broker.cluster_size))
    client = "SASL_PLAINTEXT" if broker.secrets else "PLAINTEXT"
    advertised = f"{client}://{broker.bootstrap}"
    if broker.quorum:
        quorum = {"controller.quorum.bootstrap.servers": _controllers(broker.quorum)}
        advertised += f",CONTROLLER://{controller}"
    else:
        quorum = {"controller.quorum.voters": f"{broker.node_id}@{controller}"}
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(broker.node_id),
        **quorum,
        "controller.listener.names": "CONTROLLER",
        "listeners": f"{client}://{broker.bootstrap},CONTROLLER://{controller}",
        "advertised.listeners": advertised,
        "listener.security.protocol.map": f"{client}:{client},CONTROLLER:{client}",
        "inter.broker.listener.name": client,
        **(_sasl(broker.secrets) if broker.secrets else {}),
        "log.dirs": str(broker.data_dir.resolve()),
        "num.partitions": str(broker.partitions),
        "auto.create.topics.enable": "false",  # topics come from ensure_topics, names checked
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "unclean.leader.election.enable": "false",  # never elect a replica that lacks acked writes
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": "0",
        **RECOVERY_SETTINGS,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _sasl(secrets: Path) -> dict[str, str]:
    """Clients and brokers authenticate with SCRAM-SHA-512 (users stored in the cluster's
    metadata, made when it is formatted), the controllers with PLAIN (they run before that
    metadata is readable); every request is authorised by ACL, the administrator excepted."""
    admin, password = credentials.KAFKA_ADMIN, credentials.kafka_password(secrets, credentials.KAFKA_ADMIN)
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    return {
        "sasl.enabled.mechanisms": credentials.SCRAM,
        "sasl.mechanism.inter.broker.protocol": credentials.SCRAM,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config":
            f'{scram} required username="{admin}" password="{password}";',
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config":
            f'{plain} required username="{admin}" password="{password}" user_{admin}="{password}";',
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{admin}",
        "allow.everyone.if.no.acl.found": "false",
    }


def admin_security(broker: LocalKafka) -> KafkaSecurity:
    """The administrator's client settings for ``broker`` (PLAINTEXT when it is unsecured)."""
    if broker.secrets is None:
        return KafkaSecurity(security_protocol="PLAINTEXT")
    env = credentials.kafka_env(broker.secrets, credentials.KAFKA_ADMIN)
    return KafkaSecurity(security_protocol="SASL_PLAINTEXT", sasl_username=env["KAFKA_SASL_USERNAME"],
                         sasl_password=env["KAFKA_SASL_PASSWORD"])


def _controllers(ports: tuple[int, ...]) -> str:
    return ",".join(f"{LOOPBACK}:{port}" for port in ports)


def _write_config(broker: LocalKafka) -> None:
    broker.home.mkdir(parents=True, exist_ok=True)
    broker.properties_file.touch(mode=0o600)
    broker.properties_file.chmod(0o600)  # it holds the administrator's password
    broker.properties_file.write_text(server_properties(broker))
    broker.log4j_file.write_text((files("npo_deploy") / "kafka-log4j2.xml").read_text())


def _java(broker: LocalKafka, main: str, *args: str) -> list[str]:
    return ["java", "-Xms256m", f"-Xmx{broker.heap_max}", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={broker.log4j_file.resolve()}",
            "-cp", str(broker.libs.resolve() / "*"), main, *args]  # fmt: skip


def new_cluster_id() -> str:
    """A random KRaft cluster id: a UUID in unpadded base64url, as Kafka's own tools make it."""
    return urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _new_directory_id() -> str:
    """A log directory id as Kafka makes one (``Uuid.randomUuid``: never one starting "-")."""
    while (candidate := new_cluster_id()).startswith("-"):
        pass
    return candidate


def _formatted(broker: LocalKafka) -> bool:
    return (broker.data_dir / "meta.properties").exists()


def _scram_users(secrets: Path | None) -> list[str]:
    """``--add-scram`` options: the administrator and every principal of ``acl``."""
    if secrets is None:
        return []
    names = [credentials.KAFKA_ADMIN, *(p.name for p in acl.PRINCIPALS)]
    return [f"--add-scram={credentials.SCRAM}=[name={name},password="
            f"{credentials.kafka_password(secrets, name)}]" for name in names]


def _format_storage(nodes: tuple[LocalKafka, ...]) -> None:
    """Format the nodes' data dirs, all with one cluster id; a formatted dir is reused as is.

    A cluster's nodes are formatted together, each with the same initial controllers (every
    node's id, controller address and log directory id), as Kafka's documentation describes.
    """
    blank = [node for node in nodes if not _formatted(node)]
    if not blank:
        _check_users(nodes)
        return
    if len(blank) != len(nodes):
        raise LaunchError(f"only some nodes of the cluster in {nodes[0].home.parent} are formatted")
    # "--cluster-id=" with the value attached: a base64url id may start with "-", which the
    # tool's argument parser would otherwise read as an option (1 start in 64 failed so).
    options = [f"--cluster-id={new_cluster_id()}", *_scram_users(nodes[0].secrets)]
    if nodes[0].quorum:
        options.append("--initial-controllers=" + ",".join(
            f"{node.node_id}@{LOOPBACK}:{node.controller_port}:{_new_directory_id()}" for node in nodes))
    for node in nodes:
        command = _java(node, "kafka.tools.StorageTool", "format", *options,
                        "-c", str(node.properties_file))  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LaunchError(f"Kafka storage format failed:\n{result.stdout}{result.stderr}")
        if node.secrets is not None:
            (node.home / _USERS_MARKER).touch()


# Marks a data dir formatted with the SCRAM users: the users live in the cluster's metadata and
# only a format puts them there.
_USERS_MARKER = "npo-scram-users"


def _check_users(nodes: tuple[LocalKafka, ...]) -> None:
    """A locked node's data dir must hold its users: one formatted before the lockdown cannot.
    The advice is one line to paste: the broker's local data goes (events still in it with
    it), the database keeps its own (``npo up`` hands old schemas to the service roles)."""
    old = [str(node.data_dir) for node in nodes
           if node.secrets is not None and not (node.home / _USERS_MARKER).exists()]
    if old:
        raise LaunchError(f"{' '.join(old)} was formatted without the SCRAM users the locked broker "
                          f"needs (a state dir from before the lockdown); run: "
                          f"make down && rm -rf {' '.join(old)} && make up")


def find(broker: LocalKafka) -> psutil.Process | None:
    """The running broker process of ``broker``, if any."""
    return processes.find_process(broker.pid_file, str(broker.properties_file.resolve()))


def start(broker: LocalKafka, timeout: float = 90.0, console: Console | None = None) -> bool:
    """Start one node detached and wait until it serves clients; False if already up.

    A node of a formatted cluster is started alone (after a stop or a kill); it is ready once
    a majority of the cluster's controllers runs.
    """
    if (running := find(broker)) is not None:
        _wait_ready(broker, running, timeout)
        return False
    _prepare(broker, console)
    _format_storage((broker,))
    _spawn_and_wait(broker, timeout)
    grant(broker)
    return True


def _prepare(broker: LocalKafka, console: Console | None) -> None:
    _require("java")
    ensure_jars(broker.libs, console)
    _check_ports_free(broker)
    _write_config(broker)


def _spawn(broker: LocalKafka) -> psutil.Process:
    command = _java(broker, _MAIN_CLASS, str(broker.properties_file.resolve()))
    return psutil.Process(processes.spawn_detached(command, broker.log_file, broker.pid_file))


def _spawn_and_wait(broker: LocalKafka, timeout: float, process: psutil.Process | None = None) -> None:
    process = process or _spawn(broker)
    try:
        _wait_ready(broker, process, timeout)
    except LaunchError:
        processes.terminate(process, timeout=5)  # reap it if dead, do not leave it if hung
        broker.pid_file.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class LocalCluster:
    """Local nodes that make one cluster (one node, or three for replication)."""

    nodes: tuple[LocalKafka, ...]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> LocalKafka:
        return next(node for node in self.nodes if node.node_id == node_id)


def cluster(home: Path, ports: list[tuple[int, int]], libs_dir: Path | None = None,
            secrets: Path | None = None) -> LocalCluster:
    """The nodes of a cluster in ``home`` on the (client, controller) ``ports``; a single pair
    makes one node in ``home`` itself, more make ``home/node-1``, ``home/node-2`` …; locked
    with the users of ``secrets`` (see ``LocalKafka.secrets``)."""
    if len(ports) == 1:
        [(port, controller)] = ports
        return LocalCluster((LocalKafka(home, port, controller, libs_dir, secrets=secrets),))
    quorum = tuple(controller for _, controller in ports)
    return LocalCluster(tuple(
        LocalKafka(home / f"node-{n}", port, controller, libs_dir, node_id=n, quorum=quorum,
                   secrets=secrets)
        for n, (port, controller) in enumerate(ports, start=1)))


def start_cluster(nodes: LocalCluster, timeout: float = 120.0, console: Console | None = None) -> bool:
    """Start every node of ``nodes`` that is not running, all at once (a cluster's node waits
    for a quorum of controllers); False if all were up already."""
    found = {node: find(node) for node in nodes.nodes}
    down = [node for node, process in found.items() if process is None]
    if not down:
        _all(lambda node: _wait_ready(node, found[node], timeout), list(nodes.nodes))  # type: ignore[arg-type]
        return False
    for node in down:
        _prepare(node, console)
    _format_storage(nodes.nodes)
    spawned = {node: _spawn(node) for node in down}
    _all(lambda node: _spawn_and_wait(node, timeout, spawned[node]), down)
    grant(down[0])
    return True


def stop_cluster(nodes: LocalCluster, timeout: float = 30.0) -> bool:
    """Stop every node; False if none was running."""
    return any(_all(lambda node: stop(node, timeout), list(nodes.nodes)))


def running(nodes: LocalCluster) -> bool:
    return all(find(node) is not None for node in nodes.nodes)


def _all(act: Callable[[LocalKafka], bool | None], nodes: list[LocalKafka]) -> list[bool | None]:
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return list(pool.map(act, nodes))


def _check_ports_free(broker: LocalKafka) -> None:
    for port in (broker.port, broker.controller_port):
        if processes.port_open(port):
            raise LaunchError(f"port {port} is already in use; is another broker running?")


def _wait_ready(broker: LocalKafka, process: psutil.Process, timeout: float) -> None:
    def ready() -> bool:
        return serves(broker)

    if not processes.wait_until(ready, lambda: processes.is_alive(process), timeout):
        state = "is not ready" if processes.is_alive(process) else "died"
        tail = processes.log_tail(broker.log_file)
        raise LaunchError(f"Kafka at {broker.bootstrap} {state} ({broker.log_file}):\n{tail}")


def serves(broker: LocalKafka) -> bool:
    """Whether the node answers a metadata request naming itself among the live brokers."""
    return broker.node_id in _live_brokers(broker.bootstrap, admin_security(broker))


def stop(broker: LocalKafka, timeout: float = 30.0) -> bool:
    """SIGTERM the broker, SIGKILL it after ``timeout`` s; False if it was not running."""
    process = find(broker)
    if process is None:
        return False
    processes.terminate(process, timeout)
    broker.pid_file.unlink(missing_ok=True)
    return True


def kill(broker: LocalKafka) -> None:
    """SIGKILL the node (kill -9: no clean shutdown, its logs are recovered at the next start),
    reap it and forget its pid file; for fault tests and benchmarks."""
    process = find(broker)
    if process is None:
        raise LaunchError(f"no Kafka node runs in {broker.home}")
    os.killpg(process.pid, signal.SIGKILL)
    processes.terminate(process, timeout=10)  # reaps the dead child (nothing left to signal)
    broker.pid_file.unlink(missing_ok=True)


def is_reachable(bootstrap: str, timeout_ms: int = 3000) -> bool:
    """Whether a broker at ``bootstrap`` answers this process's clients (``KafkaSecurity``) a
    metadata request naming a live broker."""
    return bool(_live_brokers(bootstrap, KafkaSecurity(), timeout_ms))


def _live_brokers(bootstrap: str, security: KafkaSecurity, timeout_ms: int = 3000) -> set[int]:
    if not _accepts_tcp(bootstrap):
        return set()  # spares aiokafka's connection-error log lines when nothing listens
    try:
        return processes.run_async(_broker_ids(bootstrap, security, timeout_ms))
    except (KafkaError, OSError):
        return set()


def _accepts_tcp(bootstrap: str) -> bool:
    for endpoint in bootstrap.split(","):
        host, _, port = endpoint.strip().rpartition(":")
        if port.isdigit() and processes.port_open(int(port), host or LOOPBACK):
            return True
    return False


async def _broker_ids(bootstrap: str, security: KafkaSecurity, timeout_ms: int) -> set[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms,
                                **security.client_options())
    await admin.start()
    try:
        described = await admin.describe_cluster()
        return {int(broker["node_id"]) for broker in described["brokers"]}
    finally:
        await admin.close()


# Kafka protocol codes of CreateAcls: resource types, pattern types, operations, permission.
_TOPIC, _GROUP = 2, 3
_LITERAL, _PREFIXED = 3, 4
_READ, _WRITE, _DESCRIBE = 3, 4, 8
_ALLOW = 3


def acl_bindings(principal: acl.Principal) -> list[tuple[int, str, int, int]]:
    """(resource type, name, pattern type, operation) of every ACL ``principal`` is granted:
    write its own topics and the dead letters of those it reads, read those it consumes (both
    with describe, for metadata), describe the dead letters of what it writes, read its
    consumer group(s); nothing else."""
    bindings = [(_TOPIC, name, _LITERAL, op) for name in principal.written for op in (_WRITE, _DESCRIBE)]
    bindings += [(_TOPIC, name, _LITERAL, op) for name in principal.read for op in (_READ, _DESCRIBE)]
    bindings += [(_TOPIC, name, _LITERAL, _DESCRIBE) for name in principal.described]
    if principal.group:
        bindings.append((_GROUP, principal.group, _PREFIXED if principal.group_prefix else _LITERAL, _READ))
    return bindings


def grant(broker: LocalKafka) -> None:
    """Create every principal's ACLs (as the administrator; adding one that exists changes
    nothing). A broker without secrets has no authoriser: nothing to grant."""
    if broker.secrets is not None:
        processes.run_async(_create_acls(broker.bootstrap, admin_security(broker)))


async def _create_acls(bootstrap: str, security: KafkaSecurity) -> None:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, **security.client_options())
    await client.bootstrap()
    try:
        for principal in acl.PRINCIPALS:
            for kind, name, pattern, operation in acl_bindings(principal):
                request = CreateAclsRequest(kind, name, pattern, f"User:{principal.name}", "*",
                                            operation, _ALLOW)
                response = await client.send(client.get_random_node(), request)
                errors = [r for r in response.creation_responses if r[0] != 0]
                if errors:
                    raise LaunchError(f"granting {principal.name} on {name} failed: {errors}")
    finally:
        await client.close()
