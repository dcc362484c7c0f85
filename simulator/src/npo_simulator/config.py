"""npo-simulator settings: its SIMULATOR_* fields on top of the shared infrastructure ones."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from npo_platform.settings import PlatformSettings


class SimulatorSettings(PlatformSettings):
    """What the simulated producers read from their environment."""

    model_config = SettingsConfigDict(env_prefix="SIMULATOR_", extra="ignore", populate_by_name=True)

    service_name: str = "npo-simulator"
    http_host: str = "127.0.0.1"
    http_port: int = 8110
    # Where the aggregating system reaches these producers (the routing table's endpoints begin
    # so): a producer answers only tokens whose audience is its own endpoint there.
    public_url: str | None = None
    population: int = 100_000
    seed: int = 1

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")
