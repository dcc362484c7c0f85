"""The infrastructure is locked (issue 24, part 5): each service's credentials reach only its own
topics and schema, and a client without credentials reaches neither the broker nor the
database. Run against the session's broker and database, launched as the local stack's are."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from npo_deploy import credentials, stack
from npo_deploy.infra import secrets_dir
from npo_platform import acl
from npo_platform.db import apply_migrations
from npo_platform.kafka_admin import ensure_event_topics, ensure_platform_topics
from npo_platform.settings import KafkaSecurity, PlatformSettings
from npo_platform.topics import ACCESS_EVENTS, CONSENT_EVENTS, ENGAGEMENT_UPDATES, INDEX_CHANGES

pytestmark = pytest.mark.integration

SECRETS = secrets_dir(PlatformSettings())
DENIED = (TopicAuthorizationFailedError, GroupAuthorizationFailedError)


def _as(principal: str, password: str | None = None) -> dict[str, Any]:
    env = credentials.kafka_env(SECRETS, principal)
    return KafkaSecurity(security_protocol="SASL_PLAINTEXT", sasl_username=principal,
                         sasl_password=password or env["KAFKA_SASL_PASSWORD"]).client_options()


@asynccontextmanager
async def _producer(bootstrap: str, options: dict[str, Any]) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                request_timeout_ms=10_000, **options)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def _write(bootstrap: str, principal: str, topic: str) -> None:
    async with _producer(bootstrap, _as(principal)) as producer:
        await producer.send_and_wait(topic, b"lockdown", key=b"k")


async def _read(bootstrap: str, principal: str, topic: str, group: str) -> None:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", **_as(principal))
    try:
        await consumer.start()
        await consumer.getmany(timeout_ms=5000)
        await consumer.getmany(timeout_ms=1000)
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
async def topics(kafka_bootstrap_servers: str) -> str:
    await ensure_platform_topics(kafka_bootstrap_servers)
    return kafka_bootstrap_servers


@pytest.mark.parametrize(("principal", "topic"), [
    ("npo-query", ACCESS_EVENTS.name), ("npo-consent", CONSENT_EVENTS.name),
    ("npo-index", INDEX_CHANGES.name), ("npo-producer", ENGAGEMENT_UPDATES.name),
    ("npo-audit", ACCESS_EVENTS.dead_letter),
])
async def test_a_service_writes_its_own_topics(topics: str, principal: str, topic: str) -> None:
    await _write(topics, principal, topic)


@pytest.mark.parametrize("principal", acl.PRINCIPALS, ids=lambda p: p.name)
async def test_a_service_sees_the_topics_it_ensures_at_start(
        topics: str, principal: acl.Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every service ensures its topics and their dead letters when it starts (as itself under
    `npo up`): provisioned by the administrator, none may look missing to it, or it tries to
    create one and fails to start."""
    for variable, value in credentials.kafka_env(SECRETS, principal.name).items():
        monkeypatch.setenv(variable, value)
    assert await ensure_event_topics(topics, [*principal.writes, *principal.reads]) == []


@pytest.mark.parametrize(("principal", "topic"), [
    ("npo-audit", ACCESS_EVENTS.name), ("npo-consent", ACCESS_EVENTS.name),
    ("npo-index", ACCESS_EVENTS.name), ("npo-query", CONSENT_EVENTS.name),
    ("npo-producer", INDEX_CHANGES.name), ("npo-query", ENGAGEMENT_UPDATES.name),
])
async def test_a_service_cannot_write_another_services_topic(topics: str, principal: str, topic: str) -> None:
    with pytest.raises(DENIED):
        await _write(topics, principal, topic)


async def test_a_service_reads_what_it_consumes_in_its_own_group(topics: str) -> None:
    await _read(topics, "npo-audit", ACCESS_EVENTS.name, "npo-audit")
    await _read(topics, "npo-query", INDEX_CHANGES.name, "npo-query-replica-1")


@pytest.mark.parametrize(("principal", "topic", "group"), [
    ("npo-query", ACCESS_EVENTS.name, "npo-query-x"),  # not a topic it consumes
    ("npo-consent", INDEX_CHANGES.name, "npo-consent"),
    ("npo-producer", ENGAGEMENT_UPDATES.name, "npo-producer"),
    ("npo-audit", ACCESS_EVENTS.name, "npo-consent"),  # another service's group
])
async def test_a_service_cannot_read_another_services_topic_or_group(
    topics: str, principal: str, topic: str, group: str
) -> None:
    with pytest.raises(DENIED):
        await _read(topics, principal, topic, group)


async def test_without_credentials_no_client_reaches_the_broker(topics: str) -> None:
    for options in ({}, _as("npo-query", password="not-the-password")):
        producer = AIOKafkaProducer(bootstrap_servers=topics, request_timeout_ms=5000, **options)
        try:
            with pytest.raises(KafkaConnectionError):
                await producer.start()
        finally:
            await producer.stop()


def _url(database_url: str, role: str, password: str | None) -> str:
    parts = urlsplit(database_url)
    secret = f":{password}" if password is not None else ""
    return f"postgresql://{role}{secret}@{parts.hostname}:{parts.port}{parts.path}"


async def _connect(database_url: str, role: str) -> asyncpg.Connection[asyncpg.Record]:
    password = credentials.database_password(SECRETS, role)
    return await asyncpg.connect(_url(database_url, role, password))


async def test_a_service_role_owns_its_schema_and_nothing_else(database_url: str) -> None:
    roles = [credentials.service_role(p) for p in acl.SERVICES]
    assert roles == ["npo_index", "npo_query", "npo_consent", "npo_audit"]
    consent = await _connect(database_url, "npo_consent")
    try:
        await consent.execute("CREATE TABLE IF NOT EXISTS npo_consent.lockdown (secret text)")
        await consent.execute("INSERT INTO npo_consent.lockdown VALUES ('a consent')")
    finally:
        await consent.close()
    index = await _connect(database_url, "npo_index")
    try:
        await index.execute("CREATE TABLE IF NOT EXISTS npo_index.lockdown (x int)")  # its own
        await index.execute("CREATE TEMPORARY TABLE staged (x int)")  # the index's ingest stages
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await index.fetch("SELECT * FROM npo_consent.lockdown")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await index.execute("CREATE TABLE npo_consent.planted (x int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await index.execute("CREATE SCHEMA npo_elsewhere")
    finally:
        await index.close()


@pytest.mark.parametrize("service", ["index", "query", "consent", "audit"])
async def test_a_service_migrates_its_schema_as_its_own_role(database_url: str, service: str) -> None:
    """What each service does first when `npo up` starts it: its migrations, in its settings'
    schema, as its own role (which may create no schema)."""
    settings = next(e.load()() for e in entry_points(group="npo.services") if e.name == service)
    role = f"npo_{service}"
    assert settings.db_schema == role, "a service's schema is its role's"
    url = _url(database_url, role, credentials.database_password(SECRETS, role))
    await apply_migrations(url, schema=settings.db_schema, package=f"npo_{service}.migrations")
    assert await apply_migrations(url, schema=settings.db_schema, package=f"npo_{service}.migrations") == []


@pytest.mark.parametrize("role", ["npo", "postgres", "npo_index"])
async def test_without_a_password_no_client_reaches_the_database(database_url: str, role: str) -> None:
    for password in (None, "not-the-password"):
        with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
            await asyncpg.connect(_url(database_url, role, password))


def test_npo_up_starts_each_service_with_its_own_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "KAFKA_SASL_USERNAME", "KAFKA_NODES"):
        monkeypatch.delenv(variable, raising=False)
    settings = PlatformSettings(state_dir=tmp_path)
    envs = {name: stack.environment(settings, stack.Service(name, 1))
            for name in ("index", "query", "consent", "audit", "simulator")}
    assert {n: e["KAFKA_SASL_USERNAME"] for n, e in envs.items()} == {
        "index": "npo-index", "query": "npo-query", "consent": "npo-consent", "audit": "npo-audit",
        "simulator": "npo-producer"}
    roles = {urlsplit(envs[n]["DATABASE_URL"]).username for n in ("index", "query")}
    assert roles == {"npo_index", "npo_query"}
    passwords = {e["KAFKA_SASL_PASSWORD"] for e in envs.values()}
    assert len(passwords) == 5, "a password of its own per principal"
    stored = tmp_path / "secrets" / "kafka" / "npo-index.password"
    assert stored.read_text().strip() == envs["index"]["KAFKA_SASL_PASSWORD"]
    assert stored.stat().st_mode & 0o077 == 0, "readable by its owner only"
