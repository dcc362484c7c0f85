"""The whole national overview for cross-service and browser tests and the failover benchmark:
every service and the simulated producers under real uvicorn servers, on a real broker and
database.

The servers run in a thread of their own with its own event loop, so a test may block (a
browser driver does) while the services keep answering. Each nation has fresh topics, schemas
and consumer groups; its population's engagements reach the index the way producers send them
(the producer SDK → Kafka → the index's consumer → PostgreSQL).
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from npo_audit.config import AuditSettings
from npo_audit.main import create_app as audit_app
from npo_consent.config import ConsentSettings
from npo_consent.main import ConsentTopics
from npo_consent.main import create_app as consent_app
from npo_deploy.processes import free_port
from npo_deploy.testing import serve
from npo_deploy.tokens import QUERY_KEY_NAME, demo_people
from npo_index.config import IndexSettings
from npo_index.main import create_app as index_app
from npo_platform.contracts import AccessEvent
from npo_platform.events import decode
from npo_platform.identity import PUBLIC_KEY_FILE, Principal, Role, ensure_local_keypair, issue_token
from npo_platform.kafka_admin import ensure_topics
from npo_platform.settings import kafka_client_options
from npo_platform.telemetry import configure_tracing
from npo_platform.topics import ACCESS_EVENTS, CONSENT_EVENTS, ENGAGEMENT_UPDATES
from npo_query.config import QuerySettings
from npo_query.main import Parts
from npo_query.main import create_app as query_app
from npo_query.tokens import system_principal
from npo_simulator.cli import producer_sinks
from npo_simulator.config import SimulatorSettings
from npo_simulator.directory import directory, directory_json
from npo_simulator.organisations import Organisation
from npo_simulator.server import create_app as simulator_app
from npo_simulator.simulation import announce_population
from npo_simulator.store import RecordSource

T = TypeVar("T")

@dataclass(frozen=True)
class Topics:
    updates: str
    changes: str
    access: str
    consent: str

    @classmethod
    def fresh(cls, run: str) -> Topics:
        return cls(*(f"test.nation.{run}.{name}" for name in ("updates", "changes", "access", "consent")))


@dataclass
class Nation:
    """A running national overview: base URLs, its topics, its population, a token issuer."""

    index: str
    consent: str
    query: str
    audit: str
    simulator: str
    topics: Topics
    kafka: str
    source: RecordSource
    engagements: int
    private_key: bytes
    patient: str  # the demo patient: has records at two producers or more
    people: dict[Role, Principal] = field(default_factory=dict)
    query_key: bytes | None = None  # the query's own signing key, when it has one (not the issuer's)

    def token(self, who: Principal | Role, ttl: timedelta = timedelta(hours=1)) -> str:
        principal = self.people[who] if isinstance(who, Role) else who
        return issue_token(self.private_key, principal, ttl)

    def headers(self, who: Principal | Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(who)}"}

    def producer(self, org: Organisation) -> Principal:
        return Principal(sub=org.source_system, name=org.name, roles=frozenset({Role.PRODUCER}),
                         logical_addresses=frozenset({org.logical_address}),
                         care_giver=org.care_giver)

    @property
    def aggregator(self) -> Principal:
        """The query service's own system identity: the index's FindContent answers only it."""
        return system_principal(QuerySettings())

    def patient_self(self, patient: str) -> Principal:
        """The patient in person (the patient role, a patient-facing channel): a block is
        placed by the patient or by the care giver holding the information."""
        sub = f"patient-{uuid.uuid5(uuid.NAMESPACE_OID, patient).hex[:12]}"
        return Principal(sub=sub, name="Patient", roles=frozenset({Role.PATIENT}), patient=patient)

    def name_of(self, hsa_id: str) -> str | None:
        """The name the pages show for a care giver, care unit or person of the nation's
        directory (what the index serves them); None when the directory lacks it."""
        document = directory(self.source.nation)
        entries = [*document["organisations"], *document["care_units"], *document["people"]]
        return next((str(entry["name"]) for entry in entries if entry["hsa_id"] == hsa_id), None)

    def producers_of(self, patient: str) -> dict[Organisation, list[Any]]:
        """The organisations holding (readable, non social-services) records of ``patient``."""
        person = self.source.person(patient)
        assert person is not None
        by_org: dict[Organisation, list[Any]] = {}
        for record in self.source.histories.of(person):
            if not record.social_services:
                by_org.setdefault(record.producer, []).append(record)
        return by_org


@contextmanager
def running_nation(kafka: str, database_url: str, state_dir: Path, *, population: int = 1_500,
                   seed: int = 11, query_options: dict[str, Any] | None = None,
                   wrap_producers: Callable[[Any], Any] | None = None,
                   query_key: bool = False) -> Iterator[Nation]:
    """Start the nation in a background thread; stop it (and wait) when the block ends.

    ``wrap_producers`` wraps the simulated producers' ASGI app (e.g. ``ProducerCalls``).
    ``query_key``: the query signs its tokens with a key of its own, as deployed (deploy/k8s)."""
    ready: dict[str, Any] = {}
    started = threading.Event()
    stopping: list[Callable[[], object]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        stopping.append(lambda: loop.call_soon_threadsafe(stop.set))
        try:
            async with _nation(kafka, database_url, state_dir, population, seed, query_options or {},
                               wrap_producers or (lambda app: app), query_key) as nation:
                ready["nation"] = nation
                started.set()
                await stop.wait()
        except BaseException as error:
            ready["error"] = error
            started.set()
            raise

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        configure_tracing("npo-nation")  # real trace ids, as in a deployment (no exporter)
    thread = threading.Thread(target=lambda: asyncio.run(main()), name="nation", daemon=True)
    thread.start()
    started.wait(timeout=300)
    if "nation" not in ready:
        raise RuntimeError("the nation did not start") from ready.get("error")
    try:
        yield ready["nation"]
    finally:
        stopping[0]()
        thread.join(timeout=60)


@asynccontextmanager
async def _nation(kafka: str, database_url: str, state: Path, population: int, seed: int,
                  query_options: dict[str, Any], wrap: Callable[[Any], Any],
                  query_key: bool) -> AsyncIterator[Nation]:
    run = uuid.uuid4().hex[:8]
    topics = Topics.fresh(run)
    private_path, public_path = ensure_local_keypair(state / "keys")
    assert public_path.name == PUBLIC_KEY_FILE
    names = [topics.updates, topics.changes, topics.access, topics.consent]
    await ensure_topics(kafka, [*names, *(f"{n}.dlq" for n in names)])
    common: dict[str, Any] = {"kafka_bootstrap_servers": kafka, "database_url": database_url,
                              "state_dir": state, "jwt_public_key_path": public_path}
    source = RecordSource(population, seed=seed)
    own_key, trusting, query_private = _own_query_key(state) if query_key else ({}, {}, None)
    async with AsyncExitStack() as exits:
        port = free_port()  # the producers answer only tokens bound to their own endpoints
        sim_url = await exits.enter_async_context(serve(wrap(simulator_app(SimulatorSettings(
            **common, **trusting, population=population, seed=seed, public_url=f"http://127.0.0.1:{port}"),
            source)), port=port))
        index_port = free_port()  # the audit's pages read names from the index, started after it
        audit_url = await exits.enter_async_context(serve(audit_app(AuditSettings(
            **common, db_schema=f"audit_{run}", consumer_group=f"audit-{run}",
            access_topic=topics.access, consent_topic=topics.consent,
            index_url=f"http://127.0.0.1:{index_port}"))))
        directory = state / f"directory-{run}.json"  # the operator view's reference data
        directory.write_text(directory_json(source.nation), encoding="utf-8")
        index_url = await exits.enter_async_context(serve(index_app(IndexSettings(
            **common, **trusting, db_schema=f"idx_{run}", consumer_group=f"idx-{run}",
            updates_topic=topics.updates, changes_topic=topics.changes, audit_url=audit_url,
            directory_file=directory)), port=index_port))
        consent_topics = ConsentTopics(replace(ACCESS_EVENTS, name=topics.access),
                                       replace(CONSENT_EVENTS, name=topics.consent))
        consent_url = await exits.enter_async_context(serve(consent_app(ConsentSettings(
            **common, db_schema=f"consent_{run}", consumer_group=f"consent-{run}"),
            topics=consent_topics)))
        routing = state / f"routing-{run}.json"
        routing.write_text(routing_table(source, sim_url))
        query = QuerySettings(**{
            **common, "db_schema": f"query_{run}", "index_url": index_url,
            "consent_url": consent_url, "routing_file": routing, "access_topic": topics.access,
            "consent_topic": topics.consent, "changes_topic": topics.changes,
            "producer_timeout_s": 2.0, "allow_loopback_routes": True, **own_key, **query_options})
        # Fresh topics: the query's consumers may read them from the start (production: latest).
        query_url = await exits.enter_async_context(
            serve(query_app(query, parts=Parts(offset_reset="earliest"))))
        announced = await _announce(kafka, topics, source)
        patient = source.demo_patient()
        nation = Nation(index_url, consent_url, query_url, audit_url, sim_url, topics, kafka,
                        source, announced, private_path.read_bytes(), patient,
                        demo_people(patient), query_private)
        await wait_indexed(nation, announced)
        yield nation


def _own_query_key(state: Path) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """The query's settings with a signing key of its own and a state dir without the issuer's
    private key (as deployed); the settings of those trusting its key: the index and the
    producers (consent and audit take no token of the query's); the key."""
    private, public = ensure_local_keypair(state / "query-key", QUERY_KEY_NAME)
    return ({"state_dir": state / "query-state", "signing_key_path": private},
            {"jwt_service_key_paths": (public,)}, private.read_bytes())


class ProducerCalls:
    """ASGI wrapper of the simulated producers: counts calls per (logical address, category,
    patient); the patient id is read from the request body, which is then replayed."""

    def __init__(self, app: Any) -> None:
        self.app, self.calls = app, Counter[tuple[str, str, str]]()

    def wrap(self, app: Any) -> ProducerCalls:
        """Count the calls to ``app`` (``running_nation(..., wrap_producers=calls.wrap)``)."""
        self.app = app
        return self

    def of(self, logical_address: str, patient: str | None = None) -> int:
        return sum(n for (address, _, who), n in self.calls.items()
                   if address == logical_address and patient in (None, who))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        parts = scope.get("path", "").split("/")
        if scope["type"] != "http" or len(parts) != 4 or parts[1] != "producers":
            await self.app(scope, receive, send)
            return
        messages = [await receive()]
        while messages[-1].get("more_body"):
            messages.append(await receive())
        try:
            patient = str(json.loads(b"".join(m.get("body", b"") for m in messages))["patientId"])
        except (ValueError, KeyError, TypeError):
            patient = ""
        self.calls[(parts[2], parts[3], patient)] += 1
        replay = iter(messages)
        await self.app(scope, lambda: _next_or(replay, receive), send)


async def _next_or(replay: Iterator[Any], receive: Callable[[], Any]) -> Any:
    return next(replay, None) or await receive()


def routing_table(source: RecordSource, producers_url: str) -> str:
    """The routing table (TAK): every simulated producer, every category, for the query service;
    the municipalities' social-services addresses declared as such (never called)."""
    social = set(source.nation.social_services_addresses)
    addresses = sorted({o.logical_address for o in source.nation.organisations} | social)
    return json.dumps({
        "routes": [{"logical_address": a, "endpoint": f"{producers_url}/producers/{a}",
                    "social_services": a in social} for a in addresses],
        "authorisations": [{"consumer_system": QuerySettings().consumer_system,
                            "logical_address": a, "categories": "*"} for a in addresses],
    })


async def _announce(kafka: str, topics: Topics, source: RecordSource) -> int:
    async with producer_sinks(kafka, replace(ENGAGEMENT_UPDATES, name=topics.updates)) as sink_for:
        progress = await announce_population(source, sink_for)
    return progress.engagements


async def indexed(nation: Nation) -> int:
    """Live engagements the index holds, by its coverage statistics."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{nation.index}/coverage", headers=nation.headers(Role.OPERATOR))
        answer.raise_for_status()
        return sum(int(entry["engagements"]) for entry in answer.json())


async def wait_indexed(nation: Nation, at_least: int) -> None:
    async with asyncio.timeout(120):
        while await indexed(nation) < at_least:  # noqa: ASYNC110 - polling another service
            await asyncio.sleep(0.2)


async def eventually(fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool],
                     within: float = 30.0) -> T:
    """Poll ``fetch`` until ``done`` holds (another service catches up through Kafka)."""
    async with asyncio.timeout(within):
        while not done(found := await fetch()):  # noqa: ASYNC110 - polling other services
            await asyncio.sleep(0.2)
    return found


async def audit_records(http: httpx.AsyncClient, nation: Nation, patient: str,
                        kind: str = "access") -> list[Any]:
    """The compliance officer's search of the patient's audit records of ``kind``."""
    answer = await http.post(f"{nation.audit}/audit/search",
                             json={"patient_id": patient, "kind": kind},
                             headers=nation.headers(Role.COMPLIANCE_OFFICER))
    assert answer.status_code == 200, answer.text
    items: list[Any] = answer.json()["items"]
    return items


async def extract(http: httpx.AsyncClient, nation: Nation, patient: str) -> list[Any]:
    """The patient's own log extract."""
    answer = await http.post(f"{nation.audit}/audit/extract", json={},
                             headers=nation.headers(demo_people(patient)[Role.PATIENT]))
    assert answer.status_code == 200, answer.text
    items: list[Any] = answer.json()["items"]
    return items


def with_event(event_id: str) -> Callable[[list[Any]], bool]:
    return lambda items: any(i["event_id"] == event_id for i in items)


async def access_event(nation: Nation, event_id: str) -> AccessEvent:
    """The access event with ``event_id``, read from the nation's access topic."""
    consumer = AIOKafkaConsumer(nation.topics.access, **kafka_client_options(nation.kafka),
                                auto_offset_reset="earliest", group_id=f"test-{uuid.uuid4().hex}")
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for r in records:
                        event = decode(AccessEvent, r.value, r.headers)
                        if event.meta.event_id == event_id:
                            return event
    finally:
        await consumer.stop()
