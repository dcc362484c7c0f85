"""End to end on the real broker and database: commands publish ConsentEvents; access events in
produce violation flags (rules as they stood at each access's time)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from consent_support import ANNA, BO, CG_B, CG_M, UA1, UB1, UM1, bearer, new_patient
from fastapi import FastAPI

from npo_consent.config import ConsentSettings
from npo_consent.main import ConsentTopics, create_app
from npo_platform.contracts import AccessEvent, ConsentEvent
from npo_platform.contracts.events_pb2 import (
    CONSENT,
    DATA_FROM_SOURCE,
    EMERGENCY,
    EMERGENCY_OPEN,
    READ,
    WITHHELD_BY_DECISION,
    Actor,
    ProducerResult,
)
from npo_platform.events import new_meta
from npo_platform.identity import Role, ensure_local_keypair
from npo_platform.kafka import DLQ_REASON, EventPublisher
from npo_platform.kafka_admin import ensure_topics, with_dead_letters
from npo_platform.settings import kafka_client_options
from npo_platform.topics import ACCESS_EVENTS, CONSENT_EVENTS, Topic

pytestmark = pytest.mark.integration


@pytest.fixture
async def topics(kafka_bootstrap_servers: str) -> ConsentTopics:
    suffix = uuid.uuid4().hex[:8]
    wanted = ConsentTopics(
        Topic(f"test.consent-e2e.access.{suffix}", ACCESS_EVENTS.key, ACCESS_EVENTS.message),
        Topic(f"test.consent-e2e.consent.{suffix}", CONSENT_EVENTS.key, CONSENT_EVENTS.message),
    )
    names = with_dead_letters([wanted.access_events, wanted.consent_events])
    await ensure_topics(kafka_bootstrap_servers, names)
    return wanted


@pytest.fixture
def private_key(tmp_path: Path) -> tuple[bytes, Path]:
    private, public = ensure_local_keypair(tmp_path / "keys")
    return private.read_bytes(), public


@pytest.fixture
async def app(
    database_url: str, kafka_bootstrap_servers: str, topics: ConsentTopics, private_key: tuple[bytes, Path],
    request: pytest.FixtureRequest,
) -> AsyncIterator[FastAPI]:
    settings = ConsentSettings(
        database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap_servers,
        db_schema=f"consent_e2e_{uuid.uuid4().hex[:8]}", consumer_group=f"consent-e2e-{uuid.uuid4().hex[:8]}",
        jwt_public_key_path=private_key[1], expiry_interval_s=0.2,
        relay_interval_s=getattr(request, "param", 0.5),  # a test may set it (indirect parametrize)
    )
    app = create_app(settings, topics=topics)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://npo-consent.test") as client:
        yield client


@pytest.fixture
async def consent_events(
    kafka_bootstrap_servers: str, topics: ConsentTopics
) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(topics.consent_events.name, **kafka_client_options(kafka_bootstrap_servers),
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    yield consumer
    await consumer.stop()


@pytest.fixture
async def publisher(kafka_bootstrap_servers: str) -> AsyncIterator[EventPublisher]:
    publisher = EventPublisher(kafka_bootstrap_servers, client_id="consent-e2e")
    await publisher.start()
    yield publisher
    await publisher.stop()


def access(patient: str, at: datetime, reader: Any = ANNA, *, basis: int = CONSENT, reason: str = "",
           producers: tuple[ProducerResult, ...] = (), event_id: str | None = None) -> AccessEvent:
    event = AccessEvent(
        meta=new_meta("npo-query", at=at), patient_id=patient, categories=["diagnoses"], basis=basis,
        activity=EMERGENCY_OPEN if basis == EMERGENCY else READ, emergency_reason=reason,
        actor=Actor(user_hsa_id=reader.user, care_unit_hsa_id=reader.care_unit,
                    care_giver_hsa_id=reader.care_giver, purpose=reader.purpose),
        producers=list(producers),
    )
    if event_id:
        event.meta.event_id = event_id
    return event


def released(
    controller: str, unit: str, *, social: bool = False, status: int = DATA_FROM_SOURCE
) -> ProducerResult:
    return ProducerResult(logical_address=unit, data_controller=controller, care_unit_hsa_id=unit,
                          status=status, social_services=social)


async def until(check: Callable[[], Any], within_s: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.1)


RELAY_NEVER_DUE_S = 600.0  # longer than read_consent_events ever waits


async def read_consent_events(consumer: AIOKafkaConsumer, patient: str, count: int) -> list[ConsentEvent]:
    found: list[ConsentEvent] = []
    deadline = asyncio.get_running_loop().time() + 20
    while len(found) < count and asyncio.get_running_loop().time() < deadline:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for record in records:
                event = ConsentEvent.FromString(record.value)
                if event.patient_id == patient:
                    assert record.key == patient.encode()
                    found.append(event)
    return found


@pytest.mark.parametrize("app", [RELAY_NEVER_DUE_S], indirect=True)
async def test_commands_wake_the_relay_and_expiry_is_announced(
    client: httpx.AsyncClient, consent_events: AIOKafkaConsumer, private_key: tuple[bytes, Path]
) -> None:
    """The relay's interval is longer than the test may wait: the events can only arrive because
    each change (the commands, then the expiry sweep) woke the relay."""
    patient, anna = new_patient(), bearer(private_key[0], ANNA)
    await client.post("/v1/relations", json={"patient_id": patient}, headers=anna)
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    short = await client.post("/v1/consents", headers=anna,
                              json={"patient_id": patient, "care_unit": UA1, "valid_to": soon})
    assert short.status_code == 201

    first_two = await read_consent_events(consent_events, patient, 2)
    expired = await read_consent_events(consent_events, patient, 1)

    assert [(e.subject, e.change) for e in first_two] == [
        (ConsentEvent.PATIENT_RELATION, ConsentEvent.REGISTERED),
        (ConsentEvent.CONSENT, ConsentEvent.REGISTERED),
    ]
    assert [(e.subject, e.change, e.record_id) for e in expired] == [
        (ConsentEvent.CONSENT, ConsentEvent.EXPIRED, short.json()["record_id"])]


async def test_access_events_produce_violation_flags_once_each(
    client: httpx.AsyncClient, publisher: EventPublisher, topics: ConsentTopics,
    private_key: tuple[bytes, Path], kafka_bootstrap_servers: str, app: FastAPI,
) -> None:
    patient, key = new_patient(), private_key[0]
    anna, officer = bearer(key, ANNA), bearer(key, ANNA, Role.COMPLIANCE_OFFICER)
    await client.post("/v1/relations", json={"patient_id": patient}, headers=anna)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    consent = await client.post(
        "/v1/consents", headers=anna, json={"patient_id": patient, "care_unit": UA1, "valid_to": tomorrow}
    )
    await asyncio.sleep(0.05)
    while_consented = datetime.now(UTC)
    await asyncio.sleep(0.05)
    await client.post(f"/v1/consents/{consent.json()['record_id']}/revoke", headers=anna)
    await asyncio.sleep(0.05)
    after_revocation = datetime.now(UTC)

    b1 = released(CG_B, UB1)
    emergency_id = str(uuid.uuid4())
    events = [
        # allowed then: consent in force at its time (no flag, although revoked since)
        access(patient, while_consented, producers=(b1,)),
        # released after the revocation: flagged
        access(patient, after_revocation, producers=(b1,), event_id="after-revocation-" + emergency_id),
        # emergency access without a registered emergency: a flag (its follow-up is the audit's)
        access(patient, after_revocation, basis=EMERGENCY, reason="unconscious", producers=(b1,),
               event_id=emergency_id),
        # the same event again (at-least-once delivery): no second flag
        access(patient, after_revocation, basis=EMERGENCY, reason="unconscious", producers=(b1,),
               event_id=emergency_id),
        # social-services information released: always flagged
        access(patient, while_consented, reader=BO, producers=(released(CG_M, UM1, social=True),)),
        # withheld producers are not releases
        access(patient, after_revocation, producers=(released(CG_B, UB1, status=WITHHELD_BY_DECISION),)),
    ]
    for event in events:
        await publisher.publish(topics.access_events, patient, event)
    bad = access(patient, after_revocation)
    bad.patient_id = "not-a-patient"
    await publisher.publish(topics.access_events, "x", bad)

    stats = app.state.runtime.consumer.stats

    async def all_consumed() -> bool:
        return stats.handled + stats.dead_lettered >= len(events) + 1

    assert await until(all_consumed)
    flags = [v for v in (await client.get("/v1/violations", headers=officer)).json()
             if v["patient_id"] == patient]

    assert sorted((v["access_event_id"][:17], v["reason_code"]) for v in flags) == sorted([
        ("after-revocation-", "no_consent"), (emergency_id[:17], "no_consent"),
        (events[4].meta.event_id[:17], "social_services")])
    assert await dead_letter_reason(kafka_bootstrap_servers, topics) == "access.invalid_patient_id"


async def dead_letter_reason(bootstrap: str, topics: ConsentTopics) -> str:
    consumer = AIOKafkaConsumer(topics.access_events.dead_letter, **kafka_client_options(bootstrap),
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        for _ in range(100):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                return dict(records[0].headers)[DLQ_REASON].decode()
        return ""
    finally:
        await consumer.stop()
