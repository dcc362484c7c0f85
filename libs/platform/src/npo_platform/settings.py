"""Settings base for every NPO process: infrastructure addresses and local state from the env."""

from __future__ import annotations

import os
import ssl
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from npo_platform.topics import ACCESS_EVENTS, CONSENT_EVENTS, ENGAGEMENT_UPDATES, INDEX_CHANGES, Topic

# The local stack's fixed loopback addresses, defined here once. The launcher binds them;
# every service and tool defaults to them, and any environment variable overrides them.
LOCAL_KAFKA_PORT = 19092
LOCAL_KAFKA_CONTROLLER_PORT = 19093
LOCAL_POSTGRES_PORT = 15432
LOCAL_POSTGRES_USER = "npo"
LOCAL_POSTGRES_DATABASE = "npo"
LOCAL_KAFKA_BOOTSTRAP = f"127.0.0.1:{LOCAL_KAFKA_PORT}"


def local_kafka_ports(nodes: int) -> list[tuple[int, int]]:
    """The (client, controller) ports of the local stack's Kafka nodes: 19092/19093 for the
    first, each further node the next pair up."""
    return [(LOCAL_KAFKA_PORT + 2 * n, LOCAL_KAFKA_CONTROLLER_PORT + 2 * n) for n in range(nodes)]


def local_kafka_bootstrap(nodes: int) -> str:
    """Every local node's client address: a client still starts when one of them is down."""
    return ",".join(f"127.0.0.1:{port}" for port, _ in local_kafka_ports(nodes))


LOCAL_DATABASE_URL = (
    f"postgresql://{LOCAL_POSTGRES_USER}@127.0.0.1:{LOCAL_POSTGRES_PORT}/{LOCAL_POSTGRES_DATABASE}"
)


def _shared(name: str) -> AliasChoices:
    """Infrastructure settings are read from the same unprefixed variable by every service."""
    return AliasChoices(name)


class KafkaSecurity(BaseSettings):
    """How this process's Kafka clients authenticate (``KAFKA_SECURITY_PROTOCOL``,
    ``KAFKA_SASL_USERNAME``, ``KAFKA_SASL_PASSWORD``, ``KAFKA_SASL_MECHANISM``,
    ``KAFKA_SSL_CAFILE``). Every platform client (publishers, consumers, admin) takes its
    options from here; the launcher, ``npo up`` and the test plugin set them for each process
    (a service's own principal, or the administrator for tools and tests), Kubernetes from the
    service's Secrets. Without them a client speaks PLAINTEXT, which a locked broker refuses.
    """

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None

    def client_options(self) -> dict[str, Any]:
        """aiokafka's keyword arguments for this identity."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {
            "security_protocol": self.security_protocol, "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password.get_secret_value() if self.sasl_password else None,
        }
        if self.security_protocol == "SASL_SSL":
            options["ssl_context"] = ssl.create_default_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        return options


def kafka_client_options(bootstrap_servers: str) -> dict[str, Any]:
    """Everything an aiokafka client of this process needs to connect to ``bootstrap_servers``."""
    return {"bootstrap_servers": bootstrap_servers, **KafkaSecurity().client_options()}


class PlatformSettings(BaseSettings):
    """Infrastructure settings shared by all services.

    A service subclasses this with its own ``env_prefix`` (``INDEX_``, ``AUDIT_`` …) for its
    own fields; the fields below keep their well-known unprefixed names.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    service_name: str = "npo"
    kafka_bootstrap_servers: str = Field(
        LOCAL_KAFKA_BOOTSTRAP, validation_alias=_shared("KAFKA_BOOTSTRAP_SERVERS")
    )
    # How many Kafka nodes the local stack runs (KAFKA_NODES=3 for a replicated cluster); the
    # default bootstrap then names all of them.
    kafka_nodes: int = Field(1, ge=1, validation_alias=_shared("KAFKA_NODES"))
    kafka_security: KafkaSecurity = Field(default_factory=KafkaSecurity)
    database_url: str = Field(LOCAL_DATABASE_URL, validation_alias=_shared("DATABASE_URL"))
    state_dir: Path = Field(Path(".npo"), validation_alias=_shared("NPO_STATE_DIR"))
    otel_exporter_otlp_endpoint: str | None = Field(
        None, validation_alias=_shared("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    log_level: str = Field("INFO", validation_alias=_shared("NPO_LOG_LEVEL"))
    jwt_public_key_path: Path | None = Field(
        None, validation_alias=_shared("NPO_JWT_PUBLIC_KEY_PATH")
    )
    # Public keys of platform services signing their own system tokens (the query service's),
    # comma-separated: trusted for tokens whose one role is ``system`` (npo_platform.identity).
    jwt_service_key_paths: Annotated[tuple[Path, ...], NoDecode] = Field(
        (), validation_alias=_shared("NPO_JWT_SERVICE_KEY_PATHS")
    )
    # Browser pages served by one service call the others' APIs (with a bearer token, never a
    # cookie). Which page origins may do so: loopback by default, the deployment's own in
    # production (e.g. ``https://npo\.example\.se``).
    web_origin_regex: str = Field(
        r"http://(127\.0\.0\.1|localhost)(:[0-9]{1,5})?",
        validation_alias=_shared("NPO_WEB_ORIGIN_REGEX"),
    )

    # Requests (each service's own ``<PREFIX>_…`` variables). A body larger than this is refused
    # with 413 unless its route allows more; rates per user and per client system
    # (``"20/second;600/minute"``, per replica; empty: no limit) are refused with 429.
    max_body_bytes: int = Field(64 * 1024, ge=1)
    rate_limit_user: str = "20/second;600/minute"
    rate_limit_client: str = "1000/second"

    @field_validator("jwt_service_key_paths", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _local_cluster_bootstrap(self) -> Self:
        if "kafka_bootstrap_servers" not in self.model_fields_set:
            self.kafka_bootstrap_servers = local_kafka_bootstrap(self.kafka_nodes)
        return self

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"


def _default_http_host() -> str:
    """``NPO_HTTP_HOST`` for every service (the container image sets 0.0.0.0), else loopback."""
    return os.environ.get("NPO_HTTP_HOST", "127.0.0.1")


class ServiceSettings(PlatformSettings):
    """What every service reads besides the infrastructure, under its own prefix.

    A service subclasses this with its ``env_prefix`` (``INDEX_`` …), its port and its own
    defaults and fields; ``<PREFIX>HTTP_PORT`` and the rest then work the same in every
    service. The topics default to the platform's names (topics.py); tests and benchmarks
    point them elsewhere.
    """

    http_host: str = Field(default_factory=_default_http_host)
    http_port: int
    db_schema: str
    db_pool_size: int = 10
    consumer_group: str = "npo"
    workers: int = Field(1, ge=1)  # server processes sharing the port (uvicorn workers)
    updates_topic: str = ENGAGEMENT_UPDATES.name
    changes_topic: str = INDEX_CHANGES.name
    access_topic: str = ACCESS_EVENTS.name
    consent_topic: str = CONSENT_EVENTS.name

    @property
    def updates(self) -> Topic:
        return replace(ENGAGEMENT_UPDATES, name=self.updates_topic)

    @property
    def changes(self) -> Topic:
        return replace(INDEX_CHANGES, name=self.changes_topic)

    @property
    def access(self) -> Topic:
        return replace(ACCESS_EVENTS, name=self.access_topic)

    @property
    def consent(self) -> Topic:
        return replace(CONSENT_EVENTS, name=self.consent_topic)
