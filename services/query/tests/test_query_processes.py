"""How npo-query is served: QUERY_WORKERS processes, each a whole replica built by
``served_app``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from npo_platform.identity import ensure_local_keypair
from npo_query import main
from npo_query.config import QuerySettings


def test_run_serves_the_factory_with_the_configured_workers(
    monkeypatch: pytest.MonkeyPatch, served_options: dict[str, Any], tmp_path: Path
) -> None:
    monkeypatch.setenv("QUERY_WORKERS", "2")
    # run() checks the signing key before it serves (test_query_signing_key.py)
    monkeypatch.setenv("QUERY_SIGNING_KEY_PATH", str(ensure_local_keypair(tmp_path)[0]))
    served = served_options

    main.run()

    assert served["app"] == "npo_query.main:served_app"
    assert served["factory"] is True
    assert served["workers"] == 2
    assert served["port"] == QuerySettings().http_port


def test_served_app_configures_telemetry_and_freezes_start_up_objects(
    monkeypatch: pytest.MonkeyPatch, collector_calls: list[str]
) -> None:
    calls = collector_calls
    monkeypatch.setattr(main, "configure_process", lambda config: calls.append("telemetry"))

    app = main.served_app()

    assert calls == ["telemetry", "freeze"]
    assert app.title == "NPO patient overview query"
