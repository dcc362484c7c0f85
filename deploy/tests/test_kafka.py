"""The local Kafka launcher against a real broker: start, round trip, stop, restart on the same data."""

from __future__ import annotations

import socket
from base64 import urlsafe_b64encode
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from npo_deploy import kafka, processes
from npo_deploy.kafka import LocalKafka
from npo_deploy.processes import LOOPBACK, LaunchError
from npo_deploy.testing import isolated_kafka
from npo_platform.kafka_admin import ensure_topics
from npo_platform.settings import kafka_client_options

pytestmark = pytest.mark.integration


def _cluster_id(broker: LocalKafka) -> str:
    lines = (broker.data_dir / "meta.properties").read_text().splitlines()
    return next(line.split("=", 1)[1] for line in lines if line.startswith("cluster.id="))


async def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(**kafka_client_options(bootstrap))
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def _consume_all(bootstrap: str, topic: str, group: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, **kafka_client_options(bootstrap), group_id=group, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=10_000)
        return [record.value for records in batches.values() for record in records if record.value]
    finally:
        await consumer.stop()


async def test_broker_lifecycle_keeps_topics_and_records(tmp_path: Path) -> None:
    broker = isolated_kafka(tmp_path / "kafka")
    assert kafka.start(broker) is True
    try:
        assert kafka.is_reachable(broker.bootstrap)
        assert kafka.start(broker) is False  # already running: no second broker
        assert await ensure_topics(broker.bootstrap, ["t.lifecycle"], partitions=2) == ["t.lifecycle"]
        await _produce(broker.bootstrap, "t.lifecycle", b"before restart")
        assert await _consume_all(broker.bootstrap, "t.lifecycle", "g1") == [b"before restart"]
        cluster_id = _cluster_id(broker)
    finally:
        assert kafka.stop(broker) is True
    assert kafka.find(broker) is None
    assert not kafka.is_reachable(broker.bootstrap)
    assert kafka.stop(broker) is False

    assert kafka.start(broker) is True
    try:
        assert _cluster_id(broker) == cluster_id  # same data dir, not reformatted
        assert await ensure_topics(broker.bootstrap, ["t.lifecycle"]) == []
        assert await _consume_all(broker.bootstrap, "t.lifecycle", "g2") == [b"before restart"]
    finally:
        kafka.stop(broker)


def test_busy_port_fails_fast_without_spawning(tmp_path: Path) -> None:
    broker = isolated_kafka(tmp_path / "kafka")
    with socket.socket() as busy:
        busy.bind((LOOPBACK, broker.port))
        busy.listen()
        with pytest.raises(LaunchError, match="already in use"):
            kafka.start(broker)
    assert not broker.pid_file.exists()


def test_a_dying_broker_reports_its_log(tmp_path: Path) -> None:
    broker = isolated_kafka(tmp_path / "kafka")
    broker.data_dir.mkdir(parents=True)  # formatted for another node: the broker must refuse it
    (broker.data_dir / "meta.properties").write_text(
        "version=1\nnode.id=2\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\ndirectory.id=AAAAAAAAAAAAAAAAAAAAAQ\n"
    )
    (broker.home / "npo-scram-users").touch()  # formatted by the launcher, users and all
    with pytest.raises(LaunchError, match=r"(died|exited at once)") as failure:
        kafka.start(broker, timeout=60)
    assert "node.id" in str(failure.value) or "node id" in str(failure.value)
    assert kafka.find(broker) is None


def test_server_properties_describe_a_single_node_kraft_cluster(tmp_path: Path) -> None:
    broker = LocalKafka(home=tmp_path, port=processes.free_port(), controller_port=1)
    props = dict(line.split("=", 1) for line in kafka.server_properties(broker).splitlines())
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == f"1@{LOOPBACK}:1"
    assert props["advertised.listeners"] == f"PLAINTEXT://{broker.bootstrap}"
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    replication = {k: v for k, v in props.items() if "replication.factor" in k}
    assert set(replication.values()) == {"1"}


def test_jars_are_fetched_once_then_reused_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    libs = kafka.ensure_jars(tmp_path / "libs")
    assert (libs / f"kafka_2.13-{kafka.KAFKA_VERSION}.jar").exists()
    assert (libs / f"log4j-slf4j-impl-{kafka.LOG4J_VERSION}.jar").exists()
    monkeypatch.setenv("PATH", "")  # no mvn now: the marker alone must suffice
    assert kafka.ensure_jars(tmp_path / "libs") == libs



def test_a_cluster_id_starting_with_a_dash_is_formatted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One random id in 64 starts with "-" in base64url; the format command must take it."""
    dashed = urlsafe_b64encode(b"\xf8" + bytes(15)).decode().rstrip("=")
    assert dashed.startswith("-")
    monkeypatch.setattr(kafka, "new_cluster_id", lambda: dashed)
    broker = isolated_kafka(tmp_path / "kafka")
    assert kafka.start(broker) is True
    try:
        assert _cluster_id(broker) == dashed
        assert kafka.is_reachable(broker.bootstrap)
    finally:
        kafka.stop(broker)


def test_a_data_dir_formatted_without_users_is_refused_with_advice(tmp_path: Path) -> None:
    """A state dir from before the lockdown: its broker would refuse every client."""
    broker = isolated_kafka(tmp_path / "kafka")
    broker.data_dir.mkdir(parents=True)
    (broker.data_dir / "meta.properties").write_text(
        "version=1\nnode.id=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\ndirectory.id=AAAAAAAAAAAAAAAAAAAAAQ\n"
    )
    with pytest.raises(LaunchError, match="without the SCRAM users") as refused:
        kafka.start(broker, timeout=60)
    assert str(refused.value).endswith(f"run: make down && rm -rf {broker.data_dir} && make up")
    assert kafka.find(broker) is None
