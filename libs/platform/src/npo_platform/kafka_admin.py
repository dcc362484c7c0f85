"""Topic provisioning: the launcher and the services create the topics they use, with dead letters."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from npo_platform.topics import ALL_TOPICS, Topic, dead_letter_topic

_TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code: a racing creator got there first


class TopicProvisioningError(RuntimeError):
    """The broker refused to create a topic (other than because it already exists)."""


async def ensure_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    *,
    partitions: int = 3,
    replication_factor: int = 1,
) -> list[str]:
    """Create the missing topics among ``names``; return those this call created. Safe to race."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        missing = sorted(set(names) - set(await admin.list_topics()))
        if missing:
            wanted = [NewTopic(name, partitions, replication_factor) for name in missing]
            response = await admin.create_topics(wanted)
            failed = [e for e in response.topic_errors if e[1] not in (0, _TOPIC_ALREADY_EXISTS)]
            if failed:
                raise TopicProvisioningError(f"creating topics failed: {failed}")
        return missing
    finally:
        await admin.close()


def with_dead_letters(topics: Iterable[Topic]) -> list[str]:
    """The topic names and their dead-letter topics."""
    return [name for topic in topics for name in (topic.name, dead_letter_topic(topic.name))]


def platform_topic_names() -> list[str]:
    """Every platform topic and its dead-letter topic (the broker does not auto-create topics)."""
    return with_dead_letters(ALL_TOPICS)
