"""Every Kafka producer of the code base is made by npo_platform.kafka.create_producer, so the
delivery settings (acks, idempotence, delivery timeout) are decided in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from npo_platform import kafka

ROOT = Path(__file__).resolve().parents[3]
SOURCES = [ROOT / "libs", ROOT / "services", ROOT / "deploy", ROOT / "simulator", ROOT / "bench"]


def test_no_source_outside_the_factory_constructs_a_producer() -> None:
    factory = Path(kafka.__file__).resolve()
    offenders = [
        str(path.relative_to(ROOT))
        for tree in SOURCES if tree.is_dir()
        for path in tree.glob("**/src/**/*.py")
        if path.resolve() != factory and "AIOKafkaProducer(" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


def test_the_factory_asks_for_every_replica_and_idempotence(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []
    monkeypatch.setattr(kafka, "AIOKafkaProducer", lambda **settings: made.append(settings))
    kafka.create_producer("127.0.0.1:1", client_id="t", linger_ms=0)
    kafka.BatchPublisher("127.0.0.1:1")
    kafka.EventPublisher("127.0.0.1:1")
    assert len(made) == 3
    for settings in made:
        assert settings["acks"] == "all"
        assert settings["enable_idempotence"] is True
        assert settings["request_timeout_ms"] == kafka.PRODUCER_DELIVERY["request_timeout_ms"]
