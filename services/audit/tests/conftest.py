"""Fixtures of the audit tests: isolated settings (own schema, topics, keys), a raw DB connection,
and an HTTP client of the test module's own ``app`` fixture."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from npo_audit.config import AuditSettings
from npo_audit.main import open_store
from npo_audit.store_pg import PostgresAuditStore
from npo_deploy.testing import TopicFactory
from npo_platform.identity import ensure_local_keypair


@pytest.fixture
def audit_settings(tmp_path: Path, database_url: str, kafka_bootstrap_servers: str) -> AuditSettings:
    """Settings of one test: its own schema, state dir (keys) and no background consumers."""
    state = tmp_path / "state"
    settings = AuditSettings(
        DATABASE_URL=database_url, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap_servers,
        NPO_STATE_DIR=state, db_schema=f"audit_{uuid.uuid4().hex[:10]}", run_consumers=False,
        consumer_group=f"audit-test-{uuid.uuid4().hex[:8]}",
    )
    ensure_local_keypair(settings.keys_dir)
    return settings


@pytest.fixture
def topic_settings(audit_settings: AuditSettings, kafka_topic_factory: TopicFactory) -> AuditSettings:
    """The same, reading this test's own access and consent topics."""
    return audit_settings.model_copy(update={
        "access_topic": kafka_topic_factory(3), "consent_topic": kafka_topic_factory(3),
    })


@pytest.fixture
async def pg_store(audit_settings: AuditSettings) -> AsyncIterator[PostgresAuditStore]:
    async with open_store(audit_settings) as (_, store):
        yield store


@pytest.fixture
async def raw_db(audit_settings: AuditSettings) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    """A superuser connection on the test's schema: the 'attacker' of the tamper tests."""
    conn = await asyncpg.connect(
        audit_settings.database_url, server_settings={"search_path": audit_settings.db_schema}
    )
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP to the ``app`` fixture of the requesting test module, in process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://npo-audit.test") as http:
        yield http
