"""The overview across the real services: index, consent and query apps under uvicorn, the
simulated producers, the real broker and database. Nothing is faked.

Engagements reach the index the way producers send them (HTTP ingest → Kafka → the index's
consumer → PostgreSQL); relation, consent and a block are registered at the consent service
by HTTP; the query service finds, decides, calls and audits over HTTP and Kafka.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from npo_consent.config import ConsentSettings
from npo_consent.main import ConsentTopics
from npo_consent.main import create_app as consent_app
from npo_deploy.testing import TopicFactory, serve
from npo_index.config import IndexSettings
from npo_index.main import create_app as index_app
from npo_platform.categories import by_number
from npo_platform.contracts import AccessEvent
from npo_platform.contracts.events_pb2 import DATA_FROM_SOURCE, WITHHELD_BY_DECISION
from npo_platform.events import decode
from npo_platform.identity import (
    PUBLIC_KEY_FILE,
    Principal,
    Role,
    TokenVerifier,
    ensure_local_keypair,
    issue_token,
)
from npo_platform.topics import ACCESS_EVENTS, CONSENT_EVENTS
from npo_query.config import QuerySettings
from npo_query.main import Parts
from npo_query.main import create_app as query_app
from npo_simulator.config import SimulatorSettings
from npo_simulator.organisations import Organisation
from npo_simulator.server import create_app as simulator_app
from npo_simulator.store import RecordSource

pytestmark = pytest.mark.integration
SOURCE = RecordSource(3_000, seed=5)
UNIT, GIVER = "SE2321000016-U001", "SE2321000016-G001"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    state = tmp_path_factory.mktemp("npo-state")
    private, _ = ensure_local_keypair(state / "keys")
    return private.read_bytes(), state


def _bearer(private: bytes, principal: Principal) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(private, principal, timedelta(minutes=10))}"}


def clinician(private: bytes) -> dict[str, str]:
    return _bearer(private, Principal(sub="SE2321000016-A1B2", name="Anna", roles=frozenset(
        {Role.CLINICIAN}), care_unit=UNIT, care_giver=GIVER, assignment="A1", purpose="care"))


def admin(private: bytes) -> dict[str, str]:
    return _bearer(private, Principal(sub="SE2321000016-ADM1", name="Admin",
                                      roles=frozenset({Role.ADMIN})))


def producer(private: bytes, org: Organisation) -> dict[str, str]:
    return _bearer(private, Principal(sub=org.source_system, name=org.name,
                                      roles=frozenset({Role.PRODUCER}),
                                      logical_addresses=frozenset({org.logical_address})))


class Counting:
    """Counts the simulator's producer calls per (logical address, category)."""

    def __init__(self, app: Any) -> None:
        self.app, self.calls = app, Counter[tuple[str, str]]()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        parts = scope.get("path", "").split("/")
        if scope["type"] == "http" and len(parts) == 4 and parts[1] == "producers":
            self.calls[(parts[2], parts[3])] += 1
        await self.app(scope, receive, send)


@dataclass
class Stack:
    index: str
    consent: str
    query: str
    access_topic: str
    producers: Counting
    updates_topic: str
    kafka: str


@pytest.fixture
async def stack(keys: tuple[bytes, Path], kafka_bootstrap_servers: str, database_url: str,
                kafka_topic_factory: TopicFactory, tmp_path: Path) -> AsyncIterator[Stack]:
    _, state = keys
    run = uuid.uuid4().hex[:8]
    common: dict[str, Any] = {"kafka_bootstrap_servers": kafka_bootstrap_servers,
                              "database_url": database_url, "state_dir": state,
                              "jwt_public_key_path": state / "keys" / PUBLIC_KEY_FILE}
    access, consent_events = kafka_topic_factory(), kafka_topic_factory()
    verifier = TokenVerifier((state / "keys" / PUBLIC_KEY_FILE).read_bytes())
    async with AsyncExitStack() as exits:
        sim = Counting(simulator_app(SimulatorSettings(population=3_000, seed=5), SOURCE,
                                     token_verifier=verifier))
        sim_url = await exits.enter_async_context(serve(sim))
        index = IndexSettings(**common, db_schema=f"idx_{run}", consumer_group=f"idx-{run}",
                              updates_topic=kafka_topic_factory(),
                              changes_topic=kafka_topic_factory())
        index_url = await exits.enter_async_context(serve(index_app(index)))
        topics = ConsentTopics(replace(ACCESS_EVENTS, name=access),
                               replace(CONSENT_EVENTS, name=consent_events))
        consent = ConsentSettings(**common, db_schema=f"consent_{run}",
                                  consumer_group=f"consent-{run}")
        consent_url = await exits.enter_async_context(serve(consent_app(consent, topics=topics)))
        routing = tmp_path / "routing.json"
        routing.write_text(_routing(sim_url))
        query = QuerySettings(**common, db_schema=f"query_{run}", index_url=index_url,
                              consent_url=consent_url, routing_file=routing,
                              access_topic=access, consent_topic=consent_events,
                              changes_topic=index.changes_topic, producer_timeout_s=2.0,
                              decision_cache_ttl_s=120.0)  # only a consent event may end it
        # Fresh topics: the query's consumers may start at the beginning (in production: latest).
        app = query_app(query, parts=Parts(offset_reset="earliest"))
        query_url = await exits.enter_async_context(serve(app))
        yield Stack(index_url, consent_url, query_url, access, sim, index.updates_topic,
                    kafka_bootstrap_servers)


def _routing(sim_url: str) -> str:
    import json

    addresses = sorted({o.logical_address for o in SOURCE.nation.organisations})
    return json.dumps({
        "routes": [{"logical_address": a, "endpoint": f"{sim_url}/producers/{a}"}
                   for a in addresses],
        "authorisations": [{"consumer_system": QuerySettings().consumer_system,
                            "logical_address": a, "categories": "*"} for a in addresses],
    })


def _patient() -> tuple[str, dict[Organisation, list[Any]]]:
    for person in SOURCE.population:
        by_org: dict[Organisation, list[Any]] = {}
        for record in SOURCE.histories.of(person):
            if not record.social_services:
                by_org.setdefault(record.producer, []).append(record)
        if len(by_org) >= 2:
            return person.patient_id, by_org
    raise AssertionError("no patient with data at two producers")


def _transaction(record: Any) -> dict[str, Any]:
    category, org = by_number(record.category), record.producer
    return {"engagement": {
        "registeredResidentIdentification": record.patient_id,
        "serviceDomain": category.service_domain, "categorization": category.categorizations[0],
        "logicalAddress": org.logical_address, "businessObjectInstanceIdentifier": record.record_id,
        "sourceSystem": org.source_system, "dataController": org.care_giver,
        "mostRecentContent": record.time.strftime("%Y%m%d%H%M%S")}}


async def _ingest(http: httpx.AsyncClient, stack: Stack, private: bytes, patient: str,
                  by_org: dict[Organisation, list[Any]]) -> None:
    for org, records in by_org.items():
        answer = await http.post(f"{stack.index}/engagement-updates", headers=producer(private, org),
                                 json={"transactions": [_transaction(r) for r in records]})
        assert answer.status_code == 202, answer.text
    wanted = sum(len(r) for r in by_org.values())
    try:
        async with asyncio.timeout(30):
            while await _indexed(http, stack, private, patient) < wanted:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"the index did not apply the updates: {await _dead_letters(stack)}")


async def _dead_letters(stack: Stack) -> list[dict[str, str]]:
    consumer = AIOKafkaConsumer(f"{stack.updates_topic}.dlq", bootstrap_servers=stack.kafka,
                                auto_offset_reset="earliest", group_id=f"dlq-{uuid.uuid4().hex}")
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=3000)
        return [{k: v.decode(errors="replace") for k, v in r.headers if k.startswith("npo-dlq")}
                for records in batches.values() for r in records]
    finally:
        await consumer.stop()


async def _indexed(http: httpx.AsyncClient, stack: Stack, private: bytes, patient: str) -> int:
    domains = {by_number(n).service_domain for n in range(1, 18)}
    total = 0
    for domain in domains:
        answer = await http.post(f"{stack.index}/find-content", headers=admin(private), json={
            "registeredResidentIdentification": patient, "serviceDomain": domain})
        total += len(answer.json()["engagements"])
    return total


async def _register(http: httpx.AsyncClient, stack: Stack, private: bytes, path: str,
                    body: dict[str, Any]) -> str:
    answer = await http.post(f"{stack.consent}/v1/{path}", json=body, headers=clinician(private))
    assert answer.status_code == 201, answer.text
    record_id: str = answer.json()["record_id"]
    return record_id


async def test_the_overview_across_index_consent_producers_and_audit(
    stack: Stack, keys: tuple[bytes, Path], kafka_bootstrap_servers: str
) -> None:
    private, _ = keys
    patient, by_org = _patient()
    blocked, allowed = sorted(by_org, key=lambda o: o.logical_address)[:2]
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    async with httpx.AsyncClient(timeout=30) as http:
        await _ingest(http, stack, private, patient, by_org)
        await _register(http, stack, private, "relations", {"patient_id": patient})
        await _register(http, stack, private, "consents", {"patient_id": patient,
                                                            "care_unit": UNIT, "valid_to": later})
        await _register(http, stack, private, "blocks", {"patient_id": patient,
                                                          "care_giver": blocked.care_giver})
        answer = await http.post(f"{stack.query}/v1/overview", json={"patientId": patient},
                                 headers=clinician(private))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["outcome"] == "partial"
    assert body["blockedInformationExists"] is True
    statuses = {(p["logicalAddress"], p["status"]) for p in body["producers"]}
    assert (None, "WithheldByDecision") in statuses
    assert (allowed.logical_address, "DataFromSource") in statuses
    called = {address for address, _ in stack.producers.calls}
    assert blocked.logical_address not in called
    assert allowed.logical_address in called
    assert len(body["records"]) == len(by_org[allowed])
    [event] = await _access_events(kafka_bootstrap_servers, stack.access_topic, 1)
    assert event.trace_id == body["traceId"]
    reported = {(p.logical_address, p.status) for p in event.producers}
    assert (blocked.logical_address, WITHHELD_BY_DECISION) in reported
    assert (allowed.logical_address, DATA_FROM_SOURCE) in reported


async def _access_events(kafka: str, topic: str, count: int) -> list[AccessEvent]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka, auto_offset_reset="earliest",
                                group_id=f"test-{uuid.uuid4().hex}")
    await consumer.start()
    found: list[AccessEvent] = []
    try:
        async with asyncio.timeout(20):
            while len(found) < count:
                batches = await consumer.getmany(timeout_ms=200)
                found += [decode(AccessEvent, r.value, r.headers)
                          for records in batches.values() for r in records]
    finally:
        await consumer.stop()
    return found


async def _sse(lines: AsyncIterator[str], wanted: str) -> dict[str, Any]:
    import json

    name = ""
    async for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: ") and name == wanted:
            data: dict[str, Any] = json.loads(line.removeprefix("data: "))
            return data
    raise AssertionError(f"the stream ended before a {wanted!r} event")


async def test_new_information_in_the_index_is_pushed_then_streamed(
    stack: Stack, keys: tuple[bytes, Path]
) -> None:
    private, _ = keys
    patient, by_org = _patient()
    org, records = sorted(by_org.items(), key=lambda item: item[0].logical_address)[0]
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    async with httpx.AsyncClient(timeout=30) as http:
        await _register(http, stack, private, "relations", {"patient_id": patient})
        await _register(http, stack, private, "consents", {"patient_id": patient,
                                                            "care_unit": UNIT, "valid_to": later})
        subscription = {"patientId": patient}
        async with http.stream("POST", f"{stack.query}/v1/subscriptions", json=subscription,
                               headers=clinician(private)) as pushed:
            assert pushed.status_code == 200
            lines = pushed.aiter_lines()
            await _sse(lines, "subscribed")
            await _ingest(http, stack, private, patient, {org: records})
            async with asyncio.timeout(30):
                notice = await _sse(lines, "change")
        assert notice["logicalAddress"] == org.logical_address
        async with http.stream("POST", f"{stack.query}/v1/overview/stream",
                               json={"patientId": patient}, headers=clinician(private)) as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            accepted = await _sse(lines, "accepted")
            first = await _sse(lines, "producer")
            summary = await _sse(lines, "summary")
    assert accepted["producersCalled"] >= 1
    assert first["producer"]["status"] == "DataFromSource"
    assert first["records"]
    assert summary["outcome"] == "allowed"
    assert len(summary["order"]) == len(records)


async def test_a_revoked_consent_ends_cached_access_at_once(
    stack: Stack, keys: tuple[bytes, Path]
) -> None:
    private, _ = keys
    patient, by_org = _patient()
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    body = {"patientId": patient}
    async with httpx.AsyncClient(timeout=30) as http:
        await _ingest(http, stack, private, patient, by_org)
        await _register(http, stack, private, "relations", {"patient_id": patient})
        consent = await _register(http, stack, private, "consents",
                                  {"patient_id": patient, "care_unit": UNIT, "valid_to": later})
        for _ in range(2):  # the second read is answered from the cached decision
            allowed = await http.post(f"{stack.query}/v1/overview", json=body,
                                      headers=clinician(private))
            assert allowed.json()["outcome"] == "allowed"
        revoked = await http.post(f"{stack.consent}/v1/consents/{consent}/revoke",
                                  headers=clinician(private))
        assert revoked.status_code == 200, revoked.text
        began = asyncio.get_running_loop().time()
        async with asyncio.timeout(20):  # far below the 120 s cache TTL
            while True:
                after = await http.post(f"{stack.query}/v1/overview", json=body,
                                        headers=clinician(private))
                if after.status_code == 403:
                    break
                await asyncio.sleep(0.1)
    assert after.json()["reasonCode"] == "no_consent"
    assert asyncio.get_running_loop().time() - began < 20
