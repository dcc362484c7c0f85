"""Fault test: kill -9 the audit worker while 100,000 access events stream in; after a restart
every event is exactly one record, counted once in the search rollup, and every chain verifies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
from audit_fixtures import access_event, patient

from npo_audit.config import AuditSettings
from npo_audit.domain import Kind
from npo_audit.main import open_store
from npo_audit.service import verify_log
from npo_audit.signing import load_verifier
from npo_platform.kafka import EventPublisher

pytestmark = pytest.mark.integration
EVENTS = 100_000
# `python -m npo_audit` runs the same Typer app `npo audit` mounts, without loading every other
# service's CLI entry points (which may be mid-change in a shared checkout).
WORKER = [sys.executable, "-m", "npo_audit", "worker"]


def _start_worker(settings: AuditSettings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "NPO_STATE_DIR": str(settings.state_dir), "AUDIT_DB_SCHEMA": settings.db_schema,
        "AUDIT_CONSUMER_GROUP": settings.consumer_group,
        "AUDIT_ACCESS_TOPIC": settings.access_topic,
        "AUDIT_CONSENT_TOPIC": settings.consent_topic, "NPO_LOG_LEVEL": "WARNING",
    }
    with log.open("ab") as out:
        return subprocess.Popen(WORKER, env=env, stdout=out, stderr=subprocess.STDOUT)


def _check_alive(worker: subprocess.Popen[bytes], log: Path) -> None:
    assert worker.poll() is None, f"the worker exited: {log.read_text()[-3000:]}"


async def _stored(conn: asyncpg.Connection[asyncpg.Record]) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM record WHERE kind = 'access'"))


async def _wait_for(
    conn: asyncpg.Connection[asyncpg.Record], count: int, deadline: float,
    worker: subprocess.Popen[bytes], log: Path,
) -> int:
    stored = await _stored(conn)
    while stored < count and time.monotonic() < deadline:
        _check_alive(worker, log)
        await asyncio.sleep(0.2)
        stored = await _stored(conn)
    return stored


async def _produce(settings: AuditSettings) -> None:
    publisher = EventPublisher(settings.kafka_bootstrap_servers, linger_ms=20)
    await publisher.start()
    try:
        topic, pending = settings.access, []
        for i in range(EVENTS):
            event = access_event(patient(i % 5000))
            pending.append(await publisher.send(topic, event.patient_id, event))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await publisher.stop()


async def test_kill_9_while_100k_events_stream_in_loses_and_duplicates_nothing(
    topic_settings: AuditSettings, tmp_path: Path
) -> None:
    began = time.monotonic()
    async with open_store(topic_settings):
        pass  # migrate and create the signing key before two processes race for them
    log = tmp_path / "worker.log"
    worker = _start_worker(topic_settings, log)
    producing = asyncio.create_task(_produce(topic_settings))
    conn = await asyncpg.connect(topic_settings.database_url,
                                 server_settings={"search_path": topic_settings.db_schema})
    try:
        before_kill = await _wait_for(conn, 25_000, time.monotonic() + 90, worker, log)
        worker.send_signal(signal.SIGKILL)  # kill -9: no shutdown, no offset commit
        worker.wait(10)
        killed_at, kill_s = await _stored(conn), time.monotonic() - began
        await producing
        produced_s = time.monotonic() - began
        worker = _start_worker(topic_settings, log)
        stored = await _wait_for(conn, EVENTS, time.monotonic() + 120, worker, log)
        caught_up_s = time.monotonic() - began
        await asyncio.sleep(1.0)  # anything redelivered after the last commit would land now
        stored = await _stored(conn)
        duplicates = await conn.fetchval(
            "SELECT count(*) FROM (SELECT event_id FROM record GROUP BY event_id HAVING count(*) > 1) d"
        )
        searches = await conn.fetchval("SELECT sum(searches) FROM search_counts")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        await conn.close()
    async with open_store(topic_settings) as (_, store):
        assert await store.count(Kind.ACCESS) == EVENTS
        report = await verify_log(store, load_verifier(topic_settings.keys_dir))
    elapsed = time.monotonic() - began
    print(f"\nkill -9 at {killed_at} records ({kill_s:.1f} s; waited for {before_kill}); all produced at "
          f"{produced_s:.1f} s; {stored} stored at {caught_up_s:.1f} s; verified; {elapsed:.1f} s in all")
    assert 0 < killed_at < EVENTS, log.read_text()[-2000:]
    assert stored == EVENTS, log.read_text()[-2000:]
    assert duplicates == 0
    assert searches == EVENTS  # the rollup written with the records: killed batches counted 0 times
    assert report.ok, [f.describe() for f in report.findings[:5]]
