"""The local three-node KRaft cluster: formatted as one, every topic (internal ones too) with three
replicas of which two must acknowledge, and one node's loss costs no acknowledged write."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from npo_deploy import kafka
from npo_deploy.kafka import LocalCluster
from npo_deploy.processes import LOOPBACK
from npo_platform.kafka_admin import ensure_platform_topics
from npo_platform.settings import PlatformSettings, kafka_client_options, local_kafka_bootstrap
from npo_platform.topics import ACCESS_EVENTS, replication_for

pytestmark = pytest.mark.integration


def _properties(node: kafka.LocalKafka) -> dict[str, str]:
    return dict(line.split("=", 1) for line in kafka.server_properties(node).splitlines())


def test_three_nodes_are_voters_of_one_quorum_with_durable_defaults(tmp_path: Path) -> None:
    nodes = kafka.cluster(tmp_path, [(9001, 9002), (9003, 9004), (9005, 9006)])
    assert [n.node_id for n in nodes.nodes] == [1, 2, 3]
    assert nodes.bootstrap == f"{LOOPBACK}:9001,{LOOPBACK}:9003,{LOOPBACK}:9005"
    props = _properties(nodes.node(2))
    assert props["node.id"] == "2"
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.bootstrap.servers"] == f"{LOOPBACK}:9002,{LOOPBACK}:9004,{LOOPBACK}:9006"
    assert "controller.quorum.voters" not in props  # the voters are in the formatted metadata
    assert {k: v for k, v in props.items() if k.endswith("replication.factor")} == {
        "default.replication.factor": "3", "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3",
        "share.coordinator.state.topic.replication.factor": "3"}
    assert {k: v for k, v in props.items() if k.endswith("min.isr") or k == "min.insync.replicas"} == {
        "min.insync.replicas": "2", "transaction.state.log.min.isr": "2",
        "share.coordinator.state.topic.min.isr": "2"}
    assert props["unclean.leader.election.enable"] == "false"


def test_replication_follows_the_node_count() -> None:
    assert [replication_for(n) for n in (1, 2, 3, 5)] == [(1, 1), (2, 1), (3, 2), (3, 2)]


def test_the_local_stack_names_every_node_when_it_runs_three(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("KAFKA_NODES", "3")
    assert PlatformSettings().kafka_bootstrap_servers == local_kafka_bootstrap(3)
    assert local_kafka_bootstrap(3) == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "elsewhere:9092")
    assert PlatformSettings().kafka_bootstrap_servers == "elsewhere:9092"


def _meta(node: kafka.LocalKafka) -> dict[str, str]:
    lines = (node.data_dir / "meta.properties").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


async def _describe(bootstrap: str, topics: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    admin = AIOKafkaAdminClient(**kafka_client_options(bootstrap))
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(topics)}
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, {"min.insync.replicas": None}) for t in topics])
        min_isr = {r[3]: r[4][0][1] for r in response.resources}
        return described, min_isr
    finally:
        await admin.close()


async def _commit_once(bootstrap: str, topic: str) -> None:
    """Use a consumer group, so the broker creates its internal offsets topic."""
    consumer = AIOKafkaConsumer(topic, **kafka_client_options(bootstrap), group_id="cluster-test",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=2000)
        await consumer.commit()
    finally:
        await consumer.stop()


async def test_every_topic_has_three_replicas_two_in_sync_required(kafka_cluster: LocalCluster) -> None:
    ids = {_meta(node)["cluster.id"] for node in kafka_cluster.nodes}
    assert len(ids) == 1, "one cluster id, formatted together"
    bootstrap = kafka_cluster.bootstrap
    await ensure_platform_topics(bootstrap)
    await _commit_once(bootstrap, ACCESS_EVENTS.name)
    names = [ACCESS_EVENTS.name, ACCESS_EVENTS.dead_letter, "__consumer_offsets"]
    described, min_isr = await _describe(bootstrap, names)
    for name in names:
        partitions = described[name]["partitions"]
        assert partitions, name
        assert {len(p["replicas"]) for p in partitions} == {3}, name
    assert min_isr[ACCESS_EVENTS.name] == min_isr[ACCESS_EVENTS.dead_letter] == "2"


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(**kafka_client_options(bootstrap), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, v, key=b"one-patient") for v in values])
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, **kafka_client_options(bootstrap), auto_offset_reset="earliest")
    await consumer.start()
    found: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(found) < expected:
                batches = await consumer.getmany(timeout_ms=1000)
                found += [r.value for rs in batches.values() for r in rs if r.value]
        return found
    finally:
        await consumer.stop()


async def test_the_leader_killed_loses_no_acknowledged_write(kafka_cluster: LocalCluster) -> None:
    bootstrap = kafka_cluster.bootstrap
    await ensure_platform_topics(bootstrap)
    before = [f"before-{n}".encode() for n in range(50)]
    await _produce(bootstrap, ACCESS_EVENTS.name, before)
    described, _ = await _describe(bootstrap, [ACCESS_EVENTS.name])
    partition = next(p for p in described[ACCESS_EVENTS.name]["partitions"] if p["partition"] == 0)
    leader = kafka_cluster.node(partition["leader"])
    await asyncio.to_thread(kafka.kill, leader)
    try:
        after = [f"after-{n}".encode() for n in range(50)]
        await _produce(bootstrap, ACCESS_EVENTS.name, after)  # two in sync remain: accepted
        found = await _read_all(bootstrap, ACCESS_EVENTS.name, len(before) + len(after))
        assert sorted(found) == sorted(before + after)
    finally:
        await asyncio.to_thread(kafka.start, leader)
    assert kafka.serves(leader)
