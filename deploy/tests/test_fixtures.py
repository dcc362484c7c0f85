"""The pytest plugin's session fixtures hand out working servers and unique topics."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from npo_deploy.testing import TopicFactory
from npo_platform.settings import kafka_client_options

pytestmark = pytest.mark.integration


async def test_database_url_answers(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        assert await connection.fetchval("SELECT 1") == 1
    finally:
        await connection.close()


async def test_topic_factory_creates_unique_topics(
    kafka_bootstrap_servers: str, kafka_topic_factory: TopicFactory
) -> None:
    first, second = kafka_topic_factory(partitions=2), kafka_topic_factory()
    assert first != second
    admin = AIOKafkaAdminClient(**kafka_client_options(kafka_bootstrap_servers))
    await admin.start()
    try:
        topics = {t["topic"]: t for t in await admin.describe_topics([first, second])}
    finally:
        await admin.close()
    assert len(topics[first]["partitions"]) == 2
    assert len(topics[second]["partitions"]) == 3
