"""npo-consent settings: its CONSENT_* fields on top of the shared infrastructure ones."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from npo_platform.settings import ServiceSettings


class ConsentSettings(ServiceSettings):
    """What npo-consent reads from its environment; its HTTP port is defined here only."""

    model_config = SettingsConfigDict(env_prefix="CONSENT_", extra="ignore", populate_by_name=True)

    service_name: str = "npo-consent"
    http_port: int = 8103
    db_schema: str = "npo_consent"  # its database role's schema (npo_platform.acl)
    consumer_group: str = "npo-consent"
    relay_interval_s: float = 1.0  # the relay also runs at once after every change
    expiry_interval_s: float = 5.0
    emergency_window_minutes: int = 240
    background: bool = True  # False: serve commands and decisions only (no consumer, relay, expiry)
    # ``workers`` (CONSENT_WORKERS) server processes each run the whole service; this is safe
    # because decisions read PostgreSQL on every call (no per-process cache), one relay at a
    # time holds the outbox lock, the access-event consumers share one group and the expiry sweep
    # skips locked rows.
