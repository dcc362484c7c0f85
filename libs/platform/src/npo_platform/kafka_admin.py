"""Topic provisioning: the launcher and the services create the topics they use, with dead letters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import GroupCoordinatorNotAvailableError, NotCoordinatorForGroupError

from npo_platform.settings import kafka_client_options
from npo_platform.topics import ALL_TOPICS, Topic, dead_letter_topic

_TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code: a racing creator got there first
_REPLICATION = "default.replication.factor"
_MIN_ISR = "min.insync.replicas"


class TopicProvisioningError(RuntimeError):
    """The broker refused to create a topic (other than because it already exists)."""


async def ensure_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    *,
    partitions: int = 3,
    replication_factor: int | None = None,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create the missing topics among ``names``, each with its ``configs`` entry (topic-level
    settings, see ``topic_configs``); return those this call created. Safe to race. A topic
    that exists is left as it is.

    Replication follows the cluster: without ``replication_factor`` a topic gets the brokers'
    ``default.replication.factor`` and, set on the topic, their ``min.insync.replicas`` (three
    and two on a three-node cluster, see ``topics.replication_for``).
    """
    configs = configs or {}
    async with _admin(bootstrap_servers) as admin:
        missing = sorted(set(names) - set(await admin.list_topics()))
        if missing:
            replicas, min_isr = await _durability(admin)
            wanted = [
                NewTopic(name, partitions, replication_factor or replicas,
                         topic_configs={_MIN_ISR: min_isr, **configs.get(name, {})})
                for name in missing
            ]
            response = await admin.create_topics(wanted)
            failed = [e for e in response.topic_errors if e[1] not in (0, _TOPIC_ALREADY_EXISTS)]
            if failed:
                raise TopicProvisioningError(f"creating topics failed: {failed}")
        return missing


async def _durability(admin: AIOKafkaAdminClient) -> tuple[int, str]:
    """The replication factor and min.insync.replicas the cluster's brokers give new topics."""
    brokers = (await admin.describe_cluster())["brokers"]
    broker = str(min(int(b["node_id"]) for b in brokers))
    [response] = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.BROKER, broker, {_REPLICATION: None, _MIN_ISR: None})])
    entries = {entry[0]: entry[1] for entry in response.resources[0][4]}
    return int(entries[_REPLICATION]), entries[_MIN_ISR]


async def delete_topics(bootstrap_servers: str, names: Iterable[str]) -> None:
    """Delete those of ``names`` that exist (a benchmark's or test's own topics, at its end)."""
    async with _admin(bootstrap_servers) as admin:
        present = sorted(set(names) & set(await admin.list_topics()))
        if present:
            response = await admin.delete_topics(present)
            failed = [e for e in response.topic_error_codes if e[1] != 0]
            if failed:
                raise TopicProvisioningError(f"deleting topics failed: {failed}")


@asynccontextmanager
async def _admin(bootstrap_servers: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(**kafka_client_options(bootstrap_servers))
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


def topic_configs(topics: Iterable[Topic]) -> dict[str, dict[str, str]]:
    """The topic-level settings of ``topics`` by name, for ``ensure_topics(configs=...)``."""
    return {topic.name: dict(topic.config) for topic in topics if topic.config}


def with_dead_letters(topics: Iterable[Topic]) -> list[str]:
    """The topic names and their dead-letter topics."""
    return [name for topic in topics for name in (topic.name, dead_letter_topic(topic.name))]


async def ensure_event_topics(
    bootstrap_servers: str, topics: Iterable[Topic], *, partitions: int = 3
) -> list[str]:
    """Each of ``topics`` and its dead-letter topic, where missing, a topic with its ``config``
    (the dead letters with the broker's defaults); return those this call created."""
    topics = list(topics)
    return await ensure_topics(bootstrap_servers, with_dead_letters(topics), partitions=partitions,
                               configs=topic_configs(topics))


async def ensure_platform_topics(bootstrap_servers: str) -> list[str]:
    """Every platform topic and its dead-letter topic (the broker does not auto-create topics)."""
    return await ensure_event_topics(bootstrap_servers, ALL_TOPICS)


class GroupProgress:
    """How far a consumer group got on a topic: the sum of its committed offsets, and whether
    the group has settled.

    The platform consumer commits a record's offset only after its handler finished with it,
    so this counts the records handled (dead letters included), however often they were
    delivered. For benchmarks, tests and operators; one admin connection for many reads.
    """

    def __init__(self, bootstrap_servers: str, group_id: str, topic: str) -> None:
        self._admin = AIOKafkaAdminClient(**kafka_client_options(bootstrap_servers))
        self._group, self._topic = group_id, topic
        self._coordinator: int | None = None

    async def __aenter__(self) -> GroupProgress:
        await self._admin.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._admin.close()

    async def committed(self) -> int:
        """The committed total; 0 while the broker has no coordinator for the group (no member
        joined yet, or the coordinator moves: a caller polling for progress asks again)."""
        try:
            if self._coordinator is None:
                self._coordinator = await self._admin.find_coordinator(self._group)
            offsets = await self._admin.list_consumer_group_offsets(self._group, self._coordinator)
        except (GroupCoordinatorNotAvailableError, NotCoordinatorForGroupError):
            self._coordinator = None
            return 0
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic == self._topic and meta.offset > 0)

    async def wait_stable(self, members: int, within_s: float = 60.0) -> None:
        """Until the group is Stable with at least ``members`` members; TimeoutError after
        ``within_s``. A benchmark measures from then on: a member joining later would stop the
        group for a rebalance in the middle of the measurement."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            try:
                [response] = await self._admin.describe_consumer_groups([self._group])
            except (GroupCoordinatorNotAvailableError, NotCoordinatorForGroupError):
                response = None  # a fresh broker has no coordinator yet: ask again
            group = response.groups[0] if response else None  # (error, id, state, type, protocol, members…)
            if group is not None and group[2] == "Stable" and len(group[5]) >= members:
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"the consumer group did not settle with {members} members")
