"""docker-compose.yml and the service images agree with the code, checked without a Docker engine.

The file is validated against the compose-spec JSON schema (shipped in the check-jsonschema
wheel), then the project's own facts are checked: a compose service per service package, each
built from the one Dockerfile with its name as build argument, the infrastructure each one
needs, one port per service defined in its settings, a single-node KRaft broker, and a collector
configuration whose pipelines are wired.
"""

from __future__ import annotations

import base64
import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from npo_deploy import cli as npo_cli
from npo_deploy import compose as npo_compose
from npo_deploy.tokens import QUERY_PRIVATE_KEY_FILE, QUERY_PUBLIC_KEY_FILE
from npo_platform.identity import PUBLIC_KEY_FILE

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
COLLECTOR_FILE = ROOT / "deploy" / "otel-collector.yaml"
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
SHARED_ENVIRONMENT = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT")
INFRASTRUCTURE = ("kafka", "postgres")
# What `npo token keys` makes in .npo/keys for the compose file (never the issuer's private key).
KEYS_MADE = {f"./.npo/keys/{f}" for f in (PUBLIC_KEY_FILE, QUERY_PUBLIC_KEY_FILE, QUERY_PRIVATE_KEY_FILE)}

_DEFAULTED_VARIABLE = re.compile(r"\$\{[A-Z0-9_]+:-([^}]*)\}")
_REQUIRED_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+):\?[^}]*\}")


def _with_defaults(value: object) -> str:
    """A compose value as it reads when no variable is set (``${NAME:-default}`` → default) and
    a required one (``${NAME:?message}``, the generated passwords of .env) is set to a secret."""
    return _REQUIRED_VARIABLE.sub("secret", _DEFAULTED_VARIABLE.sub(r"\1", str(value)))


def _load_yaml(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{path.name} is not a mapping"
    return document


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    return _load_yaml(COLLECTOR_FILE)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {key: _with_defaults(value) for key, value in raw.items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's volumes as container path → the whole entry (``source:target[:mode]``)."""
    return {str(v).split(":")[1]: str(v) for v in service.get("volumes", [])}


def _source(mount: str) -> str:
    return mount.split(":")[0]


def _image_environment() -> dict[str, str]:
    """The ENV the Dockerfile gives every service's image (its final stage's wins)."""
    found: dict[str, str] = {}
    for line in _dockerfile_instructions()["ENV"]:
        found.update(pair.split("=", 1) for pair in line.split() if "=" in pair)
    return found


def _container_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(mapping).rsplit(":", 1)[-1].split("/")[0]) for mapping in service["ports"]}


def _settings_port(name: str) -> int:
    # Imported by name: this cross-service test reads each service's settings, never its code.
    module = importlib.import_module(f"npo_{name}.config")
    settings_class = getattr(module, f"{name.capitalize()}Settings")
    port = settings_class.model_fields["http_port"].default
    assert isinstance(port, int)
    return port


def _dockerfile_instructions() -> dict[str, list[str]]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    logical_lines = re.sub(r"\\\n", " ", text).splitlines()
    instructions: dict[str, list[str]] = {}
    for line in logical_lines:
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            instructions.setdefault(keyword.upper(), []).append(rest.strip())
    return instructions


def test_service_packages_are_found() -> None:
    assert SERVICES == ["audit", "consent", "index", "query"]


def test_compose_file_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE_FILE)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_reference_names_something_defined(compose: dict[str, Any]) -> None:
    services = compose["services"]
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
        for mount in service.get("volumes", []):
            source = str(mount).split(":", 1)[0]
            if source.startswith("./.npo/"):  # local state `npo token keys` creates, not in git
                assert source in KEYS_MADE, f"{name} mounts {source}"
            elif source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared_volumes, f"{name} uses undeclared volume {source}"


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        _, _, tag = image.rpartition(":")
        assert tag not in {"", "latest"}, f"{name}: image {image} is not pinned"


def test_one_dockerfile_serves_every_service() -> None:
    assert DOCKERFILE.is_file()
    assert not list((ROOT / "services").glob("*/Dockerfile"))


@pytest.mark.parametrize("name", SERVICES)
def test_service_is_built_from_the_dockerfile_with_its_name(compose: dict[str, Any], name: str) -> None:
    build = compose["services"][name]["build"]
    assert build["context"] == "."
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile"
    assert build["args"]["SERVICE"] == name
    assert (ROOT / "services" / name / "pyproject.toml").is_file()


@pytest.mark.parametrize("name", SERVICES)
def test_service_gets_the_shared_infrastructure(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    environment = _environment(service)
    assert set(SHARED_ENVIRONMENT) <= set(environment)

    assert environment["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    database = urlsplit(environment["DATABASE_URL"])
    assert (database.scheme, database.hostname, database.path) == ("postgresql", "postgres", "/npo")
    assert urlsplit(environment["OTEL_EXPORTER_OTLP_ENDPOINT"]).hostname == "otel-collector"

    for dependency in INFRASTRUCTURE:
        assert service["depends_on"][dependency] == {"condition": "service_healthy"}
        assert "healthcheck" in compose["services"][dependency]


@pytest.mark.parametrize("name", SERVICES)
def test_port_comes_from_settings_and_agrees_everywhere(compose: dict[str, Any], name: str) -> None:
    port = _settings_port(name)
    assert _container_ports(compose["services"][name]) == {port}
    assert str(compose["services"][name]["build"]["args"]["PORT"]) == str(port)
    assert _dockerfile_instructions()["EXPOSE"] == ["${PORT}"]


def test_service_ports_are_distinct() -> None:
    ports = [_settings_port(name) for name in SERVICES]
    assert len(set(ports)) == len(ports)


@pytest.mark.parametrize("name", SERVICES)
def test_dockerfile_runs_the_entry_point_as_a_non_root_user(name: str) -> None:
    instructions = _dockerfile_instructions()
    project = tomllib.loads((ROOT / "services" / name / "pyproject.toml").read_text("utf-8"))

    # The image runs npo-<SERVICE>, installed from the package npo-<SERVICE>, whose settings
    # class the health check finds by the service's name.
    assert f"npo-{name}" in project["project"]["scripts"]
    assert project["project"]["name"] == f"npo-{name}"
    assert name in project["project"]["entry-points"]["npo.services"]
    assert any("NPO_SERVICE=${SERVICE}" in env for env in instructions["ENV"])
    assert any("NPO_HTTP_HOST=0.0.0.0" in env for env in instructions["ENV"])
    assert any('pip install --no-index --find-links=/wheels "npo-${SERVICE}"' in run
               for run in instructions["RUN"])
    assert instructions["CMD"] == ['["sh", "-c", "exec \\"npo-${NPO_SERVICE}\\""]']
    assert instructions["FROM"][-1] == "python:3.11-slim"
    assert instructions["USER"][-1] not in {"root", "0"}
    assert "npo.services" in instructions["HEALTHCHECK"][-1]
    assert "/health" in instructions["HEALTHCHECK"][-1]
    assert any("constraints.txt" in run for run in instructions["RUN"])


def test_the_image_builds_every_library_a_service_depends_on() -> None:
    """pip resolves npo-* names from the wheels built here only: each must be among them."""
    (wheel_run,) = [run for run in _dockerfile_instructions()["RUN"] if "pip wheel" in run]
    assert "./libs/*/" in wheel_run  # every library under libs/, as the copy brings them all
    libraries = sorted(p.parent for p in (ROOT / "libs").glob("*/pyproject.toml"))
    built = {f"npo-{name}" for name in SERVICES}
    built |= {tomllib.loads((p / "pyproject.toml").read_text("utf-8"))["project"]["name"] for p in libraries}
    for package in [ROOT / "services" / name for name in SERVICES] + libraries:
        project = tomllib.loads((package / "pyproject.toml").read_text("utf-8"))
        ours = {d for d in project["project"]["dependencies"] if d.startswith("npo-")}
        assert ours <= built, f"{package.name} needs {ours - built}, which the image does not build"


def _broker_properties() -> dict[str, str]:
    """The server.properties the compose file's broker writes for itself (kafka-start.sh)."""
    script = (ROOT / "deploy" / "compose" / "kafka-start.sh").read_text("utf-8")
    body = script.split('cat > "$config" <<PROPERTIES\n', 1)[1].split("\nPROPERTIES\n", 1)[0]
    return dict(line.split("=", 1) for line in body.splitlines())


def test_kafka_runs_single_node_kraft_locked(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    environment = _environment(kafka)
    props = _broker_properties()

    assert kafka["image"] == "apache/kafka:4.1.1"
    assert kafka["command"] == ["bash", "/npo/kafka-start.sh"]
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == f"{props['node.id']}@kafka:9093"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr"):
        assert props[key] == "1", key
    # Every listener authenticates; every request is authorised; no one without an ACL.
    protocols = props["listener.security.protocol.map"].replace(",", ":").split(":")[1::2]
    assert set(protocols) == {"SASL_PLAINTEXT"}
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    # A cluster id is a UUID in unpadded base64url: 16 bytes.
    assert len(base64.urlsafe_b64decode(environment["CLUSTER_ID"] + "==")) == 16
    # The services' bootstrap address is one of the broker's advertised listeners.
    assert "//kafka:9092" in props["advertised.listeners"]


def test_no_container_has_a_default_password(compose: dict[str, Any], tmp_path: Path) -> None:
    text = COMPOSE_FILE.read_text("utf-8")
    defaulted = re.findall(r"\$\{([A-Z0-9_]+):-", text)
    assert not [name for name in defaulted if "PASSWORD" in name]
    required = set(_REQUIRED_VARIABLE.findall(text))
    assert required >= {"POSTGRES_PASSWORD", "NPO_KAFKA_ADMIN_PASSWORD"}
    written = dict(line.split("=", 1) for line in npo_compose.env(tmp_path).splitlines())
    assert set(written) == required, "npo compose-env writes every password the file needs"
    assert len(set(written.values())) == len(written), "a password of its own each"


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_connects_as_itself(compose: dict[str, Any], name: str) -> None:
    environment = _environment(compose["services"][name])
    assert environment["KAFKA_SASL_USERNAME"] == f"npo-{name}"
    assert environment["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert urlsplit(environment["DATABASE_URL"]).username == f"npo_{name}"
    roles = (ROOT / "deploy" / "compose" / "postgres-roles.sh").read_text("utf-8")
    assert f"CREATE SCHEMA npo_{name} AUTHORIZATION npo_{name};" in roles


def test_the_brokers_topics_and_acls_are_what_the_code_generates() -> None:
    for name, text in npo_compose.files().items():
        assert (npo_compose.HERE / name).read_text("utf-8") == text, f"run `npo k8s generate` ({name})"


def test_postgres_is_version_18_with_a_persistent_volume(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"].split(":")[1].split(".")[0] == "18"
    assert "pg_isready" in postgres["healthcheck"]["test"]
    # Since 18 the image keeps PGDATA in /var/lib/postgresql/18/docker; mounting .../data breaks.
    assert any(str(m).endswith(":/var/lib/postgresql") for m in postgres["volumes"])


def test_collector_pipelines_are_wired(compose: dict[str, Any], collector: dict[str, Any]) -> None:
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert {"grpc", "http"} <= set(protocols)
    pipelines = collector["service"]["pipelines"]
    for pipeline in pipelines.values():
        assert set(pipeline["receivers"]) <= set(collector["receivers"])
        assert set(pipeline.get("processors", [])) <= set(collector.get("processors") or {})
        assert set(pipeline["exporters"]) <= set(collector["exporters"])

    traces = pipelines["traces"]["exporters"]
    assert "debug" in traces
    jaeger = next(collector["exporters"][e] for e in traces if e.split("/")[0] == "otlp")
    assert jaeger["endpoint"].split(":")[0] in compose["services"]

    # Services export OTLP over HTTP to the collector's HTTP receiver port.
    http_port = protocols["http"]["endpoint"].rsplit(":", 1)[-1]
    for name in SERVICES:
        endpoint = _environment(compose["services"][name])["OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert str(urlsplit(endpoint).port) == http_port


def test_file_also_suits_compose_v1(compose: dict[str, Any]) -> None:
    # Debian's docker-compose 1.29 (the engine-less machines' validator) rejects these keys.
    assert not {"name", "version"} & set(compose)


@pytest.mark.parametrize("name", SERVICES)
def test_service_verifies_tokens_with_the_hosts_public_key(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    key = _environment(service)["NPO_JWT_PUBLIC_KEY_PATH"]
    assert _source(_mounts(service)[key]) == f"./.npo/keys/{PUBLIC_KEY_FILE}"


def test_the_audits_keys_outlive_its_container(compose: dict[str, Any]) -> None:
    """The audit makes its keys in its state dir at first start; they must be on a volume."""
    audit = compose["services"]["audit"]
    state_dir = _environment(audit).get("NPO_STATE_DIR", _image_environment()["NPO_STATE_DIR"])
    mount = _mounts(audit).get(state_dir)
    assert (_source(mount) if mount else None) in set(compose["volumes"]), f"nothing persists {state_dir}"


def test_the_query_signs_with_its_own_key_which_the_index_trusts(compose: dict[str, Any]) -> None:
    def mounted(name: str, path: str) -> str:
        mount = _mounts(compose["services"][name])[path]
        assert mount.endswith(":ro")
        return _source(mount)

    signing = _environment(compose["services"]["query"])["QUERY_SIGNING_KEY_PATH"]
    trusted = _environment(compose["services"]["index"])["NPO_JWT_SERVICE_KEY_PATHS"].split(",")
    assert mounted("query", signing) == f"./.npo/keys/{QUERY_PRIVATE_KEY_FILE}"
    assert [mounted("index", path) for path in trusted] == [f"./.npo/keys/{QUERY_PUBLIC_KEY_FILE}"]
    for name in ("consent", "audit"):  # they take no system token of the query's
        assert "NPO_JWT_SERVICE_KEY_PATHS" not in _environment(compose["services"][name])


def test_npo_token_keys_makes_every_key_file_the_compose_file_mounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NPO_STATE_DIR", str(tmp_path))
    # Servers elsewhere: the CLI (in this process) then sets no local credentials in os.environ,
    # which would outlive the test and point later tests' settings at the local stack.
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.invalid/npo")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.invalid:9092")
    done = CliRunner().invoke(npo_cli.app, ["token", "keys"])
    assert done.exit_code == 0, done.output
    assert Path(done.stdout.strip()) == (tmp_path / "keys" / PUBLIC_KEY_FILE).resolve()
    assert {f"./.npo/keys/{p.name}" for p in (tmp_path / "keys").iterdir()} >= KEYS_MADE
    # Readable by the query container's user (another uid); the directory is the owner's alone.
    assert (tmp_path / "keys" / QUERY_PRIVATE_KEY_FILE).stat().st_mode & 0o004
    assert (tmp_path / "keys").stat().st_mode & 0o077 == 0


def test_query_calls_the_other_services_by_their_compose_names(compose: dict[str, Any]) -> None:
    environment = _environment(compose["services"]["query"])
    for variable, host, name in (("QUERY_INDEX_URL", "index", "index"),
                                 ("QUERY_CONSENT_URL", "consent", "consent")):
        url = urlsplit(environment[variable])
        assert (url.hostname, url.port) == (host, _settings_port(name))
    # The browser, on the host, reaches the consent API at its published port.
    public = urlsplit(environment["QUERY_CONSENT_PUBLIC_URL"])
    assert (public.hostname, public.port) == ("localhost", _settings_port("consent"))
    assert f"{public.port}:{public.port}" in compose["services"]["consent"]["ports"]
