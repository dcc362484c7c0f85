"""Settings base for every NPO process: infrastructure addresses and local state from the env."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The local stack's fixed loopback addresses, defined here once. The launcher binds them;
# every service and tool defaults to them, and any environment variable overrides them.
LOCAL_KAFKA_PORT = 19092
LOCAL_KAFKA_CONTROLLER_PORT = 19093
LOCAL_POSTGRES_PORT = 15432
LOCAL_POSTGRES_USER = "npo"
LOCAL_POSTGRES_DATABASE = "npo"
LOCAL_KAFKA_BOOTSTRAP = f"127.0.0.1:{LOCAL_KAFKA_PORT}"
LOCAL_DATABASE_URL = (
    f"postgresql://{LOCAL_POSTGRES_USER}@127.0.0.1:{LOCAL_POSTGRES_PORT}/{LOCAL_POSTGRES_DATABASE}"
)


def _shared(name: str) -> AliasChoices:
    """Infrastructure settings are read from the same unprefixed variable by every service."""
    return AliasChoices(name)


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
    database_url: str = Field(LOCAL_DATABASE_URL, validation_alias=_shared("DATABASE_URL"))
    state_dir: Path = Field(Path(".npo"), validation_alias=_shared("NPO_STATE_DIR"))
    otel_exporter_otlp_endpoint: str | None = Field(
        None, validation_alias=_shared("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    log_level: str = Field("INFO", validation_alias=_shared("NPO_LOG_LEVEL"))
    jwt_public_key_path: Path | None = Field(
        None, validation_alias=_shared("NPO_JWT_PUBLIC_KEY_PATH")
    )
    # Browser pages served by one service call the others' APIs (with a bearer token, never a
    # cookie). Which page origins may do so: loopback by default, the deployment's own in
    # production (e.g. ``https://npo\.example\.se``).
    web_origin_regex: str = Field(
        r"http://(127\.0\.0\.1|localhost)(:[0-9]{1,5})?",
        validation_alias=_shared("NPO_WEB_ORIGIN_REGEX"),
    )

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"
