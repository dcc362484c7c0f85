"""The Kubernetes deployment (``deploy/k8s``, Kustomize), generated from the code it deploys.

Topics come from ``npo_platform.topics`` (with the replication of a three-broker cluster), the
Kafka users' ACLs from ``npo_platform.acl``, each service's port and schema from its settings;
``npo k8s generate`` writes the files and a test fails when they differ from what it would
write. Strimzi runs Kafka (KRaft node pools, TLS listener with SCRAM-SHA-512, simple
authorisation), CloudNativePG runs PostgreSQL (three instances, synchronous replication, a
PgBouncer pooler, a role per service owning its schema), and each service gets a Deployment,
Service, HorizontalPodAutoscaler, PodDisruptionBudget and NetworkPolicy.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

from npo_deploy.tokens import QUERY_KEY_NAME
from npo_platform import acl
from npo_platform.identity import PUBLIC_KEY_FILE, ensure_local_keypair, keypair_files
from npo_platform.topics import ALL_TOPICS, Topic, replication_for

NAMESPACE = "npo"
KAFKA = "npo"  # the Strimzi Kafka cluster: its bootstrap Service is npo-kafka-bootstrap
DATABASE = "npo-db"  # the CloudNativePG cluster
POOLER = f"{DATABASE}-pooler-rw"
BROKERS = 3
PARTITIONS = 3
KAFKA_TLS_PORT = 9093
KAFKA_VERSION = "4.1.1"
IMAGE = "npo"  # one image for every service; `kustomize edit set image npo=…` names the real one
JWT_SECRET = "npo-jwt-public-key"  # noqa: S105 - a Secret's name, no password: token verification keys
KEYS = "/keys"  # where JWT_SECRET is mounted in every pod
SIGNING = "/signing"  # where a service signing its own tokens finds its private key
EDGE = {"npo.se/edge": "true"}  # the ingress gateway's pods: where readers and producers come in
HERE = Path(__file__).resolve().parents[2] / "k8s"


@dataclass(frozen=True)
class Service:
    """One service as deployed: its principal (Kafka user, database role), port, schema, and
    the services it calls over HTTP."""

    name: str
    port: int
    schema: str
    calls: tuple[str, ...] = ()
    public: bool = True  # reached from the edge (web views, APIs for readers and producers)
    keys: bool = False  # keys its replicas share (an ``npo.keys`` entry point makes them)
    # Signs its own system tokens with this key pair's private key (Secret <app>-signing-key);
    # its public key is in JWT_SECRET for the services that trust it.
    signing_key: str | None = None
    trusts: tuple[str, ...] = ()  # the services whose system tokens it accepts (service keys)

    @property
    def keys_secret(self) -> str:
        return f"{self.app}-keys"

    @property
    def app(self) -> str:
        return f"npo-{self.name}"

    @property
    def role(self) -> str:
        return self.app.replace("-", "_")

    @property
    def signing_secret(self) -> str:
        return f"{self.app}-signing-key"


SERVICES = (
    Service("index", 8101, "npo_index", calls=("audit",), trusts=("query",)),
    Service("query", 8102, "npo_query", calls=("index", "consent"), signing_key=QUERY_KEY_NAME),
    Service("consent", 8103, "npo_consent"),
    Service("audit", 8104, "npo_audit", keys=True),
)
STATE_DIR = "/var/lib/npo"  # the image's NPO_STATE_DIR; its keys/ is where a service reads keys


def _meta(name: str, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return meta


def kafka() -> list[dict[str, Any]]:
    """The Kafka cluster (KRaft: three controllers, three brokers) and its node pools."""
    replicas, min_isr = replication_for(BROKERS)
    cluster: dict[str, Any] = {
        "apiVersion": "kafka.strimzi.io/v1beta2", "kind": "Kafka",
        "metadata": {"name": KAFKA, "annotations": {"strimzi.io/node-pools": "enabled",
                                                    "strimzi.io/kraft": "enabled"}},
        "spec": {
            "kafka": {
                "version": KAFKA_VERSION,
                "listeners": [{"name": "tls", "port": KAFKA_TLS_PORT, "type": "internal", "tls": True,
                               "authentication": {"type": "scram-sha-512"}}],
                "authorization": {"type": "simple"},
                "config": {
                    "default.replication.factor": replicas, "min.insync.replicas": min_isr,
                    "offsets.topic.replication.factor": replicas,
                    "transaction.state.log.replication.factor": replicas,
                    "transaction.state.log.min.isr": min_isr,
                    "unclean.leader.election.enable": False, "auto.create.topics.enable": False,
                },
            },
            "entityOperator": {"topicOperator": {}, "userOperator": {}},
        },
    }
    return [cluster, _pool("controller", 10), _pool("broker", 100)]


def _pool(role: str, size_gi: int) -> dict[str, Any]:
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaNodePool",
        "metadata": _meta(f"{role}s", **{"strimzi.io/cluster": KAFKA}),
        "spec": {"replicas": BROKERS, "roles": [role],
                 "storage": {"type": "jbod", "volumes": [
                     {"id": 0, "type": "persistent-claim", "size": f"{size_gi}Gi",
                      "deleteClaim": False, "kraftMetadata": "shared"}]}},
    }


def topic_spec(topic: Topic) -> dict[str, Any]:
    """A topic's KafkaTopic spec: the settings ``ensure_event_topics`` creates it with on a
    three-broker cluster."""
    replicas, min_isr = replication_for(BROKERS)
    return {"partitions": PARTITIONS, "replicas": replicas,
            "config": {"min.insync.replicas": min_isr, **dict(topic.config)}}


def topics() -> list[dict[str, Any]]:
    found = []
    for topic in ALL_TOPICS:
        dead_letter = Topic(topic.dead_letter, topic.key, topic.message)
        for each in (topic, dead_letter):
            found.append({"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaTopic",
                          "metadata": _meta(each.name.replace(".", "-"), **{"strimzi.io/cluster": KAFKA}),
                          "spec": {"topicName": each.name, **topic_spec(each)}})
    return found


def _acl(kind: str, name: str, operations: list[str], prefix: bool = False) -> dict[str, Any]:
    return {"resource": {"type": kind, "name": name, "patternType": "prefix" if prefix else "literal"},
            "operations": operations, "host": "*"}


def users() -> list[dict[str, Any]]:
    """A KafkaUser per principal: SCRAM-SHA-512 (Strimzi keeps its password in a Secret of the
    same name) and ACLs granting only its own topics and groups."""
    found = []
    for principal in acl.PRINCIPALS:
        rules = [_acl("topic", t, ["Write", "Describe"]) for t in principal.written]
        rules += [_acl("topic", t, ["Read", "Describe"]) for t in principal.read]
        rules += [_acl("topic", t, ["Describe"]) for t in principal.described]
        if principal.group:
            rules.append(_acl("group", principal.group, ["Read"], principal.group_prefix))
        found.append({"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaUser",
                      "metadata": _meta(principal.name, **{"strimzi.io/cluster": KAFKA}),
                      "spec": {"authentication": {"type": "scram-sha-512"},
                               "authorization": {"type": "simple", "acls": rules}}})
    return found


def database() -> list[dict[str, Any]]:
    """PostgreSQL: three instances, a commit waits for one synchronous standby; a role per
    service, login with a SCRAM password from its Secret, owning its schema and nothing else."""
    schemas = "; ".join(f"CREATE ROLE {s.role} NOLOGIN; CREATE SCHEMA {s.schema} AUTHORIZATION {s.role}"
                        for s in SERVICES)
    cluster = {
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": _meta(DATABASE),
        "spec": {
            "instances": 3,
            "imageName": "ghcr.io/cloudnative-pg/postgresql:18",
            "storage": {"size": "100Gi"},
            "postgresql": {
                "synchronous": {"method": "any", "number": 1, "dataDurability": "required"},
                "parameters": {"password_encryption": "scram-sha-256"},
                "pg_hba": ["hostssl npo all all scram-sha-256"],
            },
            "bootstrap": {"initdb": {"database": "npo", "owner": "npo_owner",
                                     "postInitApplicationSQL": [
                                         schemas, "REVOKE CREATE ON SCHEMA public FROM PUBLIC"]}},
            "managed": {"roles": [{"name": s.role, "ensure": "present", "login": True,
                                   "passwordSecret": {"name": f"{s.app}-db"}} for s in SERVICES]},
        },
    }
    pooler = {
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Pooler", "metadata": _meta(POOLER),
        "spec": {"cluster": {"name": DATABASE}, "instances": 2, "type": "rw",
                 # Session pooling: the services keep prepared statements and LISTEN per connection.
                 "pgbouncer": {"poolMode": "session", "parameters": {"max_client_conn": "1000"}}},
    }
    return [cluster, pooler]


def service_objects(service: Service) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": service.app, "app.kubernetes.io/part-of": "npo"}
    return [_deployment(service, labels), _service(service, labels), _autoscaler(service),
            _disruption_budget(service, labels), _network_policy(service, labels)]


def _env(service: Service) -> list[dict[str, Any]]:
    database_url = (f"postgresql://{service.role}:$(DATABASE_PASSWORD)@{POOLER}:5432/npo"
                    "?sslmode=verify-full&sslrootcert=/certs/db/ca.crt")
    secret = {"DATABASE_PASSWORD": {"secretKeyRef": {"name": f"{service.app}-db", "key": "password"}},
              "KAFKA_SASL_PASSWORD": {"secretKeyRef": {"name": service.app, "key": "password"}}}
    plain = {
        "KAFKA_BOOTSTRAP_SERVERS": f"{KAFKA}-kafka-bootstrap:{KAFKA_TLS_PORT}",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": service.app,
        "KAFKA_SSL_CAFILE": "/certs/kafka/ca.crt",
        "NPO_JWT_PUBLIC_KEY_PATH": f"{KEYS}/{PUBLIC_KEY_FILE}",
        f"{service.name.upper()}_HTTP_HOST": "0.0.0.0",  # noqa: S104 - the pod's own address
        f"{service.name.upper()}_HTTP_PORT": str(service.port),
        **{f"{service.name.upper()}_{other.upper()}_URL": f"http://npo-{other}" for other in service.calls},
    }
    if service.signing_key:
        private, _ = keypair_files(service.signing_key)
        plain[f"{service.name.upper()}_SIGNING_KEY_PATH"] = f"{SIGNING}/{private}"
    if service.trusts:
        plain["NPO_JWT_SERVICE_KEY_PATHS"] = ",".join(
            f"{KEYS}/{keypair_files(s.signing_key)[1]}"
            for s in SERVICES if s.name in service.trusts and s.signing_key)
    # Secrets first: DATABASE_URL refers to DATABASE_PASSWORD, defined before it.
    return ([{"name": k, "valueFrom": v} for k, v in secret.items()]
            + [{"name": k, "value": v} for k, v in plain.items()]
            + [{"name": "DATABASE_URL", "value": database_url}])


def _deployment(service: Service, labels: dict[str, str]) -> dict[str, Any]:
    mounts = [("tmp", "/tmp"),  # noqa: S108 - an emptyDir of the pod's own (the root is read-only)
              ("jwt", KEYS), ("kafka-ca", "/certs/kafka"), ("db-ca", "/certs/db")]
    volumes = [{"name": "tmp", "emptyDir": {}},
               {"name": "jwt", "secret": {"secretName": JWT_SECRET}},
               {"name": "kafka-ca", "secret": {"secretName": f"{KAFKA}-cluster-ca-cert"}},
               {"name": "db-ca", "secret": {"secretName": f"{DATABASE}-ca"}}]
    if service.keys:  # read-only, readable through the pod's fsGroup only
        mounts.append(("keys", f"{STATE_DIR}/keys"))
        volumes.append({"name": "keys", "secret": {"secretName": service.keys_secret,
                                                   "defaultMode": 0o440}})
    if service.signing_key:  # its own pod alone holds its private key, as the keys above
        mounts.append(("signing-key", SIGNING))
        volumes.append({"name": "signing-key", "secret": {"secretName": service.signing_secret,
                                                          "defaultMode": 0o440}})
    container = {
        "name": service.name, "image": IMAGE, "command": [service.app], "env": _env(service),
        "ports": [{"name": "http", "containerPort": service.port}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 20,
                          "failureThreshold": 6},
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": name, "mountPath": path, "readOnly": name != "tmp"}
                         for name, path in mounts],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(service.app, **labels),
        "spec": {
            "replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": service.app}},
            "template": {"metadata": {"labels": labels}, "spec": {
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                    "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
                "automountServiceAccountToken": False,
                "containers": [container], "volumes": volumes}},
        },
    }


def _service(service: Service, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(service.app, **labels),
            "spec": {"selector": {"app.kubernetes.io/name": service.app},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def _autoscaler(service: Service) -> dict[str, Any]:
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": service.app}
    cpu = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                    "averageUtilization": 70}}}
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(service.app),
            "spec": {"scaleTargetRef": target, "minReplicas": 2, "maxReplicas": 10, "metrics": [cpu]}}


def _disruption_budget(service: Service, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": _meta(service.app, **labels),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": service.app}}}}


def _pods(**labels: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": labels}}


def _network_policy(service: Service, labels: dict[str, str]) -> dict[str, Any]:
    """Only the architecture's flows: in from the edge and from the services that call it; out
    to Kafka, the pooler, DNS and the services it calls (the query service also to producers
    outside the cluster, over HTTPS)."""
    callers = [s for s in SERVICES if service.name in s.calls]
    sources = [_pods(**EDGE)] if service.public else []
    sources += [_pods(**{"app.kubernetes.io/name": s.app}) for s in callers]
    http = [{"protocol": "TCP", "port": service.port}]
    egress = [
        {"to": [_pods(**{"strimzi.io/cluster": KAFKA, "strimzi.io/kind": "Kafka"})],
         "ports": [{"protocol": "TCP", "port": KAFKA_TLS_PORT}]},
        {"to": [_pods(**{"cnpg.io/poolerName": POOLER})], "ports": [{"protocol": "TCP", "port": 5432}]},
        {"to": [{"namespaceSelector": {}, **_pods(**{"k8s-app": "kube-dns"})}],
         "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
    ]
    for other in (s for s in SERVICES if s.name in service.calls):
        egress.append({"to": [_pods(**{"app.kubernetes.io/name": other.app})],
                       "ports": [{"protocol": "TCP", "port": other.port}]})
    if service.name == "query":  # the producers' record systems, outside the cluster
        egress.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12",
                                                                          "192.168.0.0/16"]}}],
                       "ports": [{"protocol": "TCP", "port": 443}]})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(service.app, **labels),
            "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": service.app}},
                     "policyTypes": ["Ingress", "Egress"],
                     "ingress": [{"from": sources, "ports": http}], "egress": egress}}


def files() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(file name under deploy/k8s, its objects) of every generated file."""
    yield "kafka/kafka.yaml", kafka()
    yield "kafka/topics.yaml", topics()
    yield "kafka/users.yaml", users()
    yield "postgres/postgres.yaml", database()
    for service in SERVICES:
        yield f"services/{service.name}.yaml", service_objects(service)


HEADER = "# Generated by `npo k8s generate` from the code (npo_deploy.k8s); do not edit by hand.\n"


def render(objects: list[dict[str, Any]]) -> str:
    return HEADER + "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects)


def generate(target: Path = HERE) -> list[Path]:
    """Write every generated file under ``target``; the paths written."""
    written = []
    for name, objects in files():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(objects))
        written.append(path)
    return written


def write_secrets(public_key: Path, target: Path = HERE / "secrets") -> list[Path]:
    """The files the kustomization's Secrets are made from, where missing: the token issuer's
    public key (copied), a new key pair per service signing its own tokens, a random password
    per database role (never a default one) and the keys a service's replicas share (made by
    the service itself, through its ``npo.keys`` entry point, in ``<target>/npo-<service>-keys/``)."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    key = target / PUBLIC_KEY_FILE
    if not key.exists():
        key.write_bytes(public_key.read_bytes())
        written.append(key)
    for service in SERVICES:
        if service.signing_key and not (target / keypair_files(service.signing_key)[0]).exists():
            written += ensure_local_keypair(target, service.signing_key)
    for service in SERVICES:
        env = target / f"{service.app}-db.env"
        if not env.exists():
            env.write_text(f"username={service.role}\npassword={secrets.token_urlsafe(32)}\n")
            env.chmod(0o600)
            written.append(env)
    makers = {entry.name: entry for entry in entry_points(group="npo.keys")}
    for service in (s for s in SERVICES if s.keys):
        keys_dir = target / service.keys_secret
        existed = set(keys_dir.iterdir()) if keys_dir.exists() else set()
        made: list[Path] = makers[service.name].load()(keys_dir)
        written += [p for p in made if p not in existed]
    return written
