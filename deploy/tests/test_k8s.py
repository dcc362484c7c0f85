"""deploy/k8s: generated from the code, rendered by Kustomize, and every object valid against the
Kubernetes OpenAPI schemas (kubernetes-validate), Strimzi's CRDs (from its Maven artifact) and
the CloudNativePG subset this project uses (tests/schemas, written from its API reference)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from npo_deploy import k8s, maven
from npo_platform import acl
from npo_platform.identity import PUBLIC_KEY_FILE, ensure_local_keypair
from npo_platform.settings import PlatformSettings
from npo_platform.topics import ALL_TOPICS

KUBERNETES_VERSION = "1.33.0"
STRIMZI_JARS_ID = "strimzi-api-0.49.0-tests"
CNPG_SCHEMAS = Path(__file__).parent / "schemas" / "cloudnative-pg-v1.yaml"
# `make k8s-tools` installs it (go install, pinned in the Makefile).
KUSTOMIZE = Path(os.environ.get("NPO_KUSTOMIZE", ".npo/tools/kustomize-v5.8.0/kustomize"))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """``kustomize build`` of a copy of deploy/k8s, its Secrets' files generated as an operator
    would (``npo k8s secrets``)."""
    if not KUSTOMIZE.exists():
        pytest.fail(f"{KUSTOMIZE} is missing: run `make k8s-tools`")
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(k8s.HERE, tree, ignore=shutil.ignore_patterns("secrets"))
    _, public = ensure_local_keypair(tree.parent / "keys")
    k8s.write_secrets(public, tree / "secrets")
    built = subprocess.run([str(KUSTOMIZE.resolve()), "build", str(tree)], capture_output=True,
                           text=True, check=True)
    return [o for o in yaml.safe_load_all(built.stdout) if o]


@pytest.fixture(scope="module")
def strimzi_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → openAPIV3Schema of every Strimzi CRD, from io.strimzi:api's test jar."""
    libs = maven.ensure_jars(PlatformSettings().state_dir / "strimzi-crds", "strimzi-crds-pom.xml",
                             STRIMZI_JARS_ID, "Strimzi's CRDs")
    [jar] = libs.glob("api-*-tests.jar")
    schemas = {}
    with zipfile.ZipFile(jar) as archive:
        for name in archive.namelist():
            if name.startswith("crds/v1beta2/") and name.endswith(".yaml"):
                crd = yaml.safe_load(archive.read(name))
                for version in crd["spec"]["versions"]:
                    key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                    schemas[key] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


def _strict(schema: Any) -> Any:
    """The schema refusing fields it does not name, as the API server's strict field validation
    (``kubectl apply --validate=strict``) does, except where the CRD keeps unknown fields."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        strict["additionalProperties"] = False
    return strict


def _validate(obj: dict[str, Any], strimzi: dict[tuple[str, str], dict[str, Any]]) -> str:
    """Validate ``obj`` against its schema; the schema's name."""
    key = (obj["apiVersion"], obj["kind"])
    if key in strimzi:
        jsonschema.validate(obj, strimzi[key])
        return "Strimzi CRD"
    if obj["apiVersion"].startswith("postgresql.cnpg.io/"):
        schemas = yaml.safe_load(CNPG_SCHEMAS.read_text())
        jsonschema.validate(obj, {**schemas[obj["kind"]], "$defs": schemas["$defs"]})
        return "CloudNativePG subset"
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    return f"Kubernetes {KUBERNETES_VERSION}"


def test_the_files_are_what_the_code_generates() -> None:
    for name, objects in k8s.files():
        assert (k8s.HERE / name).read_text() == k8s.render(objects), f"run `npo k8s generate` ({name})"


def test_every_rendered_object_is_valid(
    rendered: list[dict[str, Any]], strimzi_schemas: dict[tuple[str, str], dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    validated = [(o["kind"], o["metadata"]["name"], _validate(o, strimzi_schemas)) for o in rendered]
    with capsys.disabled():
        print(f"\n{len(validated)} objects of deploy/k8s validated:")
        for kind, name, schema in validated:
            print(f"  {kind:<24} {name:<40} {schema}")
    kinds = {kind for kind, _, _ in validated}
    assert kinds >= {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "Cluster", "Pooler",
                     "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                     "NetworkPolicy", "Secret", "Namespace"}
    assert {o["metadata"].get("namespace") for o in rendered if o["kind"] != "Namespace"} == {"npo"}


def test_a_misspelt_field_fails_validation(
    rendered: list[dict[str, Any]], strimzi_schemas: dict[tuple[str, str], dict[str, Any]]
) -> None:
    for kind in ("Deployment", "KafkaTopic", "Cluster"):
        obj = next(o for o in rendered if o["kind"] == kind)
        wrong = {**obj, "spec": {**obj["spec"], "replicaz": 3}}
        with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
            _validate(wrong, strimzi_schemas)


def _of(rendered: list[dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    return (o for o in rendered if o["kind"] == kind)


def test_kafka_topics_carry_the_settings_of_topics_py(rendered: list[dict[str, Any]]) -> None:
    specs = {o["spec"]["topicName"]: o["spec"] for o in _of(rendered, "KafkaTopic")}
    assert set(specs) == {n for t in ALL_TOPICS for n in (t.name, t.dead_letter)}
    for topic in ALL_TOPICS:
        spec = specs[topic.name]
        assert (spec["replicas"], spec["config"]["min.insync.replicas"]) == (3, 2)
        assert dict(topic.config).items() <= {k: str(v) for k, v in spec["config"].items()}.items()
    [cluster] = _of(rendered, "Kafka")
    config = cluster["spec"]["kafka"]["config"]
    assert (config["default.replication.factor"], config["min.insync.replicas"]) == (3, 2)
    assert config["unclean.leader.election.enable"] is False


def test_each_kafka_user_may_use_only_its_own_topics(rendered: list[dict[str, Any]]) -> None:
    users = {o["metadata"]["name"]: o["spec"]["authorization"]["acls"] for o in _of(rendered, "KafkaUser")}
    assert set(users) == {p.name for p in acl.PRINCIPALS}
    writes = {name: {r["resource"]["name"] for r in rules if "Write" in r["operations"]}
              for name, rules in users.items()}
    assert writes["npo-query"] == {"npo.access.events.v1", "npo.consent.events.v1.dlq",
                                   "npo.index.changes.v2.dlq"}
    assert writes["npo-audit"] == {"npo.access.events.v1.dlq", "npo.consent.events.v1.dlq"}
    assert writes["npo-producer"] == {"npo.engagement.updates.v1"}


def test_network_policies_allow_only_the_architectures_flows(rendered: list[dict[str, Any]]) -> None:
    policies = {o["metadata"]["name"]: o["spec"] for o in _of(rendered, "NetworkPolicy")}

    def callers(service: str) -> set[str]:
        [rule] = policies[service]["ingress"]
        return {p["podSelector"]["matchLabels"].get("app.kubernetes.io/name", "edge") for p in rule["from"]}

    assert callers("npo-consent") == {"npo-query", "edge"}
    assert callers("npo-index") == {"npo-query", "edge"}
    assert callers("npo-query") == {"edge"}
    assert all(set(p["policyTypes"]) == {"Ingress", "Egress"} for p in policies.values())


def test_services_run_unprivileged_with_secrets_mounted(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    for deployment in _of(rendered, "Deployment"):
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["readinessProbe"]["httpGet"]["path"] == "/health"
        assert container["resources"]["requests"]
        env = {e["name"]: e for e in container["env"]}
        assert "secretKeyRef" in env["DATABASE_PASSWORD"]["valueFrom"]
        assert "secretKeyRef" in env["KAFKA_SASL_PASSWORD"]["valueFrom"]
    secrets = {o["metadata"]["name"]: o for o in _of(rendered, "Secret")}
    assert k8s.JWT_SECRET in secrets
    for service in (s for s in k8s.SERVICES if s.keys):
        _the_replicas_share_their_keys(rendered, service, secrets[service.keys_secret], tmp_path)
    passwords = {s["data"]["password"] for n, s in secrets.items() if n.endswith("-db")}
    assert len(passwords) == len(k8s.SERVICES), "a password of its own per service"


def _the_replicas_share_their_keys(rendered: list[dict[str, Any]], service: k8s.Service,
                                   secret: dict[str, Any], scratch: Path) -> None:
    """Every key the service would make for itself is in its Secret, mounted read-only where the
    service looks (the image's state dir), readable by the pod's user only through its group."""
    [maker] = [e for e in entry_points(group="npo.keys") if e.name == service.name]
    made = {p.name for p in maker.load()(scratch / service.name)}
    assert set(secret["data"]) == made
    [deployment] = [d for d in _of(rendered, "Deployment") if d["metadata"]["name"] == service.app]
    pod = deployment["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == service.keys_secret]
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
    [container] = pod["containers"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert (mount["mountPath"], mount["readOnly"]) == (f"{_image_state_dir()}/keys", True)


def _image_state_dir() -> str:
    """NPO_STATE_DIR as the Dockerfile sets it for every service."""
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    [value] = [line.split("NPO_STATE_DIR=")[1].split()[0] for line in dockerfile.splitlines()
               if "NPO_STATE_DIR=" in line]
    return value


def _files_named(env: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(variable, path) of every file a container's settings name (comma lists too)."""
    for name, variable in env.items():
        for value in str(variable.get("value", "")).split(","):
            if value.startswith("/"):
                yield name, value


def _mounted_secret(deployment: dict[str, Any], path: str) -> tuple[str, str]:
    """(Secret name, key) that ``path`` is in the container of ``deployment``."""
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    [mount] = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert mount["readOnly"] is True, f"{path} is on a writable volume"
    return volumes[mount["name"]]["secret"]["secretName"], path.removeprefix(mount["mountPath"] + "/")


def test_every_file_a_service_is_told_of_is_in_a_mounted_secret(rendered: list[dict[str, Any]]) -> None:
    """A file named in a setting is in a read-only Secret volume; a Secret this kustomization
    makes holds that file (the operators' Secrets, Strimzi's and CloudNativePG's CAs, are theirs)."""
    secrets = {o["metadata"]["name"]: o for o in _of(rendered, "Secret")}
    for deployment in _of(rendered, "Deployment"):
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        for variable, path in _files_named({e["name"]: e for e in container["env"]}):
            secret, key = _mounted_secret(deployment, path)
            if secret in secrets:
                assert key in secrets[secret]["data"], f"{variable}: {secret} has no {key}"


def test_the_query_signs_with_its_own_key_which_the_index_trusts(rendered: list[dict[str, Any]]) -> None:
    """The query's tokens are signed with a key mounted in its pods alone, never the issuer's;
    the index verifies them with the public key of that very key (as a service key)."""
    deployments = {o["metadata"]["name"]: o for o in _of(rendered, "Deployment")}
    secrets = {o["metadata"]["name"]: o["data"] for o in _of(rendered, "Secret")}

    def env(app: str) -> dict[str, str]:
        [container] = deployments[app]["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value", "") for e in container["env"]}

    secret, key = _mounted_secret(deployments["npo-query"], env("npo-query")["QUERY_SIGNING_KEY_PATH"])
    assert secret != k8s.JWT_SECRET
    assert set(secrets[secret]) == {key}
    private = serialization.load_pem_private_key(base64.b64decode(secrets[secret][key]), None)
    assert isinstance(private, Ed25519PrivateKey)
    trusted = env("npo-index")["NPO_JWT_SERVICE_KEY_PATHS"].split(",")
    [public] = [base64.b64decode(secrets[s][k]) for s, k in
                (_mounted_secret(deployments["npo-index"], path) for path in trusted)]
    assert public == private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    issuer_public = base64.b64decode(secrets[k8s.JWT_SECRET][PUBLIC_KEY_FILE])
    assert issuer_public != public
    holders = [name for name, d in deployments.items() if secret in
               {v.get("secret", {}).get("secretName") for v in d["spec"]["template"]["spec"]["volumes"]}]
    assert holders == ["npo-query"], "the query's private key is mounted in its pods alone"
    [volume] = [v for v in deployments["npo-query"]["spec"]["template"]["spec"]["volumes"]
                if v.get("secret", {}).get("secretName") == secret]
    assert volume["secret"]["defaultMode"] == 0o440  # the pod's user reads it through fsGroup
    assert all("NPO_JWT_SERVICE_KEY_PATHS" not in env(app) for app in ("npo-consent", "npo-audit"))
