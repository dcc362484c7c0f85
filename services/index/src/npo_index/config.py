"""npo-index settings: its INDEX_* fields on top of the shared infrastructure ones."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from npo_platform.settings import PlatformSettings


class IndexSettings(PlatformSettings):
    """What npo-index reads from its environment; its HTTP port is defined here only."""

    model_config = SettingsConfigDict(env_prefix="INDEX_", extra="ignore", populate_by_name=True)

    service_name: str = "npo-index"
    http_host: str = "127.0.0.1"
    http_port: int = 8101
