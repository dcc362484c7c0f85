"""``npo-index-worker --workers N``: N ingest processes in one consumer group, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta

import asyncpg
import psutil
import pytest
from index_helpers import T0, engagement, patient, schema_name, topic_name, tx, update, wait_for

from npo_index.config import IndexSettings
from npo_index.main import ensure_index_topics
from npo_platform.kafka import EventPublisher

pytestmark = pytest.mark.integration
MESSAGES = 300


async def test_two_worker_processes_ingest_in_one_group_and_stop_on_sigterm(
    kafka_bootstrap_servers: str, database_url: str
) -> None:
    run = topic_name().rsplit(".", 1)[-1]
    settings = IndexSettings(
        kafka_bootstrap_servers=kafka_bootstrap_servers, database_url=database_url,
        updates_topic=topic_name(), changes_topic=topic_name(), db_schema=schema_name(),
        consumer_group=f"test-index-workers-{run}",
    )
    await ensure_index_topics(settings)
    env = {
        **os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers, "DATABASE_URL": database_url,
        "INDEX_UPDATES_TOPIC": settings.updates_topic, "INDEX_CHANGES_TOPIC": settings.changes_topic,
        "INDEX_DB_SCHEMA": settings.db_schema, "INDEX_CONSUMER_GROUP": settings.consumer_group,
        "INDEX_CONSUMERS": "1", "NPO_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "npo_index", "--workers", "2"]
    parent = await asyncio.create_subprocess_exec(*command, env=env)
    conn = await asyncpg.connect(database_url)
    try:
        await wait_for(lambda: len(_workers(parent.pid)) == 2, 30)
        publisher = EventPublisher(kafka_bootstrap_servers)
        await publisher.start()
        try:
            for n in range(MESSAGES):
                p = patient(900 + n)
                at = T0 + timedelta(seconds=n)
                u = update(tx(engagement(p)), tx(engagement(p, categorization="dia")), at=at)
                await publisher.publish(settings.updates, p, u)
        finally:
            await publisher.stop()

        async def rows() -> bool:
            try:
                count = await conn.fetchval(f'SELECT count(*) FROM "{settings.db_schema}".engagements')  # noqa: S608
            except asyncpg.UndefinedTableError:
                return False
            return bool(count == 2 * MESSAGES)

        await wait_for(rows, 90, every=0.2)
        children = _workers(parent.pid)
        assert all(child.is_running() for child in children)
        parent.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            assert await parent.wait() == 0
        assert not any(child.is_running() for child in children)
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        await conn.close()


def _workers(pid: int) -> list[psutil.Process]:
    """The worker processes of ``pid`` (multiprocessing also starts a resource tracker)."""
    return [c for c in psutil.Process(pid).children() if "spawn_main" in " ".join(c.cmdline())]
