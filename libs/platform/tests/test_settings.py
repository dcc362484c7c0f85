"""ServiceSettings: the fields every service shares, read under each service's own prefix."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic_settings import SettingsConfigDict

from npo_platform.settings import ServiceSettings
from npo_platform.topics import ACCESS_EVENTS, INDEX_CHANGES


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore", populate_by_name=True)

    http_port: int = 8199
    db_schema: str = "demo"


def test_shared_fields_are_read_under_the_services_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_HTTP_PORT", "9001")
    monkeypatch.setenv("DEMO_DB_POOL_SIZE", "3")
    monkeypatch.setenv("DEMO_WORKERS", "2")
    monkeypatch.setenv("DEMO_ACCESS_TOPIC", "test.access")
    settings = DemoSettings()
    assert (settings.http_port, settings.db_pool_size, settings.workers) == (9001, 3, 2)
    assert settings.access == replace(ACCESS_EVENTS, name="test.access")
    assert settings.changes == INDEX_CHANGES


def test_npo_http_host_sets_every_services_host_and_its_own_prefix_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NPO_HTTP_HOST", raising=False)
    assert DemoSettings().http_host == "127.0.0.1"
    monkeypatch.setenv("NPO_HTTP_HOST", "127.0.0.2")  # the image sets every interface
    assert DemoSettings().http_host == "127.0.0.2"
    monkeypatch.setenv("DEMO_HTTP_HOST", "127.0.0.3")
    assert DemoSettings().http_host == "127.0.0.3"


def test_every_service_builds_on_the_shared_base() -> None:
    from importlib.metadata import entry_points

    services = {e.name: e.load() for e in entry_points(group="npo.services")}
    for name in ("index", "query", "consent", "audit"):
        assert issubclass(services[name], ServiceSettings), name
