"""Shared pieces of the query's integration tests: keys and tokens, the real simulator served by
uvicorn (with a call counter), the query app wired to the real broker and database, tracing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.types import Receive, Scope, Send

from npo_deploy.processes import free_port
from npo_deploy.testing import serve
from npo_platform.categories import by_number
from npo_platform.contracts import AccessEvent
from npo_platform.events import decode
from npo_platform.identity import Principal, Role, TokenVerifier, generate_keypair, issue_token
from npo_platform.settings import kafka_client_options
from npo_query.config import QuerySettings
from npo_query.domain import IndexEntry, Target
from npo_query.main import Parts, create_app
from npo_query.tokens import ProducerTokens
from npo_simulator.config import SimulatorSettings
from npo_simulator.organisations import nation
from npo_simulator.server import create_app as create_simulator
from npo_simulator.store import RecordSource

SOURCE = RecordSource(3_000, seed=5)
CARE_UNIT, CARE_GIVER = "SE2321000016-U001", "SE2321000016-G001"


PRIVATE, PUBLIC = generate_keypair()
VERIFIER = TokenVerifier(PUBLIC)


def token(*roles: Role, **claims: Any) -> str:
    fields: dict[str, Any] = {"sub": "SE2321000016-A1B2", "name": "Anna Läkare",
                              "roles": frozenset(roles)}
    if Role.CLINICIAN in roles:
        fields |= {"care_unit": CARE_UNIT, "care_giver": CARE_GIVER, "assignment": "A1",
                   "purpose": "care"}
    if Role.PRODUCER in roles:
        fields |= {"care_giver": CARE_GIVER}  # a producer's token names its care giver
    # Made when the tests are collected (parametrised requests): valid for the longest run.
    return issue_token(PRIVATE, Principal(**(fields | claims)), timedelta(hours=3))


def clinician() -> dict[str, str]:
    return {"Authorization": f"Bearer {token(Role.CLINICIAN)}"}


def system_token() -> str:
    return token(Role.SYSTEM, sub="SE5565594230-NPOAGP", name="npo-query")


def _tracing() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


SPANS = _tracing()


class CallCounter:
    """ASGI wrapper counting the producer calls per ``/producers/{address}/{category}``."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.calls: Counter[tuple[str, str]] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = scope.get("path", "").split("/")
        if scope["type"] == "http" and len(parts) == 4 and parts[1] == "producers":
            self.calls[(parts[2], parts[3])] += 1
        await self.app(scope, receive, send)


@dataclass
class Simulator:
    url: str
    counter: CallCounter

    async def behave(self, address: str, **behaviour: Any) -> None:
        headers = {"Authorization": f"Bearer {token(Role.ADMIN)}"}
        async with httpx.AsyncClient(base_url=self.url) as client:
            answer = await client.put(f"/admin/behaviour/{address}", json=behaviour,
                                      headers=headers)
            answer.raise_for_status()

    async def reset(self) -> None:
        headers = {"Authorization": f"Bearer {token(Role.ADMIN)}"}
        async with httpx.AsyncClient(base_url=self.url) as client:
            (await client.delete("/admin/behaviour", headers=headers)).raise_for_status()
        self.counter.calls.clear()


@asynccontextmanager
async def simulator() -> AsyncIterator[Simulator]:
    port = free_port()  # its URL first: a producer answers tokens bound to its own endpoint
    settings = SimulatorSettings(population=3_000, seed=5, public_url=f"http://127.0.0.1:{port}")
    app = create_simulator(settings, SOURCE, token_verifier=VERIFIER)
    counter = CallCounter(app)
    async with serve(counter, port=port) as url:
        yield Simulator(url, counter)


def index_entries(patient_id: str) -> list[IndexEntry]:
    """What the engagement index holds for the patient: one engagement per announced record."""
    person = SOURCE.person(patient_id)
    assert person is not None
    out = []
    for record in SOURCE.histories.of(person):
        if record.social_services:
            continue
        category, org = by_number(record.category), record.producer
        out.append(IndexEntry(category.service_domain, category.categorizations[0],
                              org.logical_address, org.source_system, org.care_giver,
                              record.time.strftime("%Y%m%d%H%M%S")))
    return out


def targets(patient_id: str) -> set[tuple[str, str]]:
    found = set()
    for entry in index_entries(patient_id):
        category = next(c for c in _categories() if c.codes[0] == (entry.service_domain,
                                                                    entry.categorization))
        found.add((entry.logical_address, category.key))
    return found


def _categories() -> list[Any]:
    return [by_number(n) for n in range(1, 18)]


def patient_with(min_producers: int, min_records_at_one: int = 1) -> str:
    """A patient whose data is at several producers, one of them with several records."""
    for person in SOURCE.population:
        entries = index_entries(person.patient_id)
        counts = Counter((e.logical_address, e.categorization) for e in entries)
        addresses = {e.logical_address for e in entries}
        if len(addresses) >= min_producers and max(counts.values(), default=0) >= min_records_at_one:
            return person.patient_id
    raise AssertionError("no such patient in the simulated population")


def routing_file(path: Path, url: str, consumer: str, *, unauthorised: Iterable[str] = (),
                 aliases: dict[str, str] | None = None) -> Path:
    """Routes every simulated organisation to the simulator; authorises all but ``unauthorised``.

    ``aliases`` maps an extra logical address to an existing one: both reach the same producer
    (a document announced under two addresses, for the de-duplication test).
    """
    addresses = [o.logical_address for o in nation().organisations]
    routes = [{"logical_address": a, "endpoint": f"{url}/producers/{a}"} for a in addresses]
    routes += [{"logical_address": alias, "endpoint": f"{url}/producers/{real}"}
               for alias, real in (aliases or {}).items()]
    skip = set(unauthorised)
    auths = [{"consumer_system": consumer, "logical_address": r["logical_address"],
              "categories": "*"} for r in routes if r["logical_address"] not in skip]
    path.write_text(json.dumps({"routes": routes, "authorisations": auths}))
    return path


def settings(tmp_path: Path, kafka: str, database_url: str, sim_url: str, topic: Any,
             **overrides: Any) -> QuerySettings:
    consumer = f"SE5565594230-T{uuid.uuid4().hex[:8].upper()}"
    unauthorised = overrides.pop("unauthorised", ())
    aliases = overrides.pop("aliases", None)
    base: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka, "database_url": database_url,
        "db_schema": "npo_query_test", "consumer_system": consumer,
        "access_topic": topic(), "consent_topic": topic(), "changes_topic": topic(),
        "routing_file": routing_file(tmp_path / "routing.json", sim_url, consumer,
                                     unauthorised=unauthorised, aliases=aliases),
        "producer_timeout_s": 0.6, "overall_deadline_s": 2.0, "audit_timeout_s": 3.0,
        "decision_cache_ttl_s": 5.0, "allow_loopback_routes": True,
    }
    return QuerySettings(**(base | overrides))


PRODUCER_TOKENS = ProducerTokens(PRIVATE, Principal(sub="SE5565594230-NPOAGP", name="npo-query",
                                                    roles=frozenset({Role.SYSTEM})))


def query_app(config: QuerySettings, index: Any, consent: Any, **parts: Any) -> FastAPI:
    return create_app(config, token_verifier=VERIFIER,
                      parts=Parts(index=index, consent=consent, tokens=system_token,
                                  producer_tokens=PRODUCER_TOKENS, offset_reset="earliest",
                                  **parts))


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan, behind an in-process client (responses are buffered)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://query.test",
                                     timeout=30) as client:
            yield client


async def access_events(kafka: str, topic: str, count: int, timeout_s: float = 20) -> list[AccessEvent]:
    """The first ``count`` access events on ``topic``."""
    consumer = AIOKafkaConsumer(topic, **kafka_client_options(kafka), auto_offset_reset="earliest",
                                group_id=f"test-{uuid.uuid4().hex}")
    await consumer.start()
    found: list[AccessEvent] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(found) < count:
                batches = await consumer.getmany(timeout_ms=200)
                found += [decode(AccessEvent, r.value, r.headers)
                          for records in batches.values() for r in records]
    finally:
        await consumer.stop()
    return found


def target_of(address: str, category: str) -> Target:
    return Target(address, category)
