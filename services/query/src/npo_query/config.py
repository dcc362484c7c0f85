"""npo-query settings: its QUERY_* fields on top of the shared infrastructure ones."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from npo_platform.settings import PlatformSettings


class QuerySettings(PlatformSettings):
    """What npo-query reads from its environment; its HTTP port is defined here only."""

    model_config = SettingsConfigDict(env_prefix="QUERY_", extra="ignore", populate_by_name=True)

    service_name: str = "npo-query"
    http_host: str = "127.0.0.1"
    http_port: int = 8102
