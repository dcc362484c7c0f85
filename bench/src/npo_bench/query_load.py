"""The processes around the query server in ``npo bench query``: producers, server app, readers.

Each runs in its own process so that its CPU can be measured apart from the query service's:

- ``serve_producers``: the simulated producers (a bare HTTP/1.1 server: uvloop, httptools)
  answering two records per call after exactly L;
- ``bench_app``: the uvicorn factory of every query server process (``--workers N``), the real
  ``create_app`` with in-memory index and consent stand-ins, or the service's own clients of
  the over-HTTP ones, reading the plan from ``NPO_QUERY_BENCH`` (JSON);
- ``serve_index``: with ``--index-over-http``, the index stand-in's engagements as FindContent
  over HTTP (a bare HTTP/1.1 server like the producers');
- ``serve_consent``: with ``--consent-over-http``, decisions allowing every engagement, the
  same way;
- ``read``: the readers, ``readers`` concurrent closed loops on uvloop, each with its own
  keep-alive connection (``ReaderConnection``, httptools), posting ``/v1/overview`` and timing it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
import uvloop
from fastapi import FastAPI

from npo_platform.categories import AVAILABLE_CATEGORIES
from npo_platform.identifiers import make_personnummer
from npo_platform.identity import TokenVerifier
from npo_query.config import QuerySettings
from npo_query.domain import Decision, EngagementVerdict, IndexEntry, RecordPolicy, Target
from npo_query.store_memory import InMemoryRoutingStore

CONSUMER = "SE5565594230-NPOBENCH"
ENV = "NPO_QUERY_BENCH"


@dataclass(frozen=True)
class ServerPlan:
    """What every query server process needs to build the same app (passed as JSON in ENV)."""

    producers: int
    patients: int
    bootstrap: str
    routing_file: str
    public_key_file: str
    system_token: str
    access_topic: str
    index_url: str = ""  # FindContent over HTTP (``serve_index``); empty: the in-process stand-in
    consent_url: str = ""  # decisions over HTTP (``serve_consent``); empty: in-process


def address(n: int) -> str:
    return f"SE{2321000000 + n:010d}-LA"


def patients_of(count: int) -> list[str]:
    rng = random.Random(11)  # noqa: S311 - benchmark data, not secrets
    return sorted({make_personnummer(date(1940, 1, 1) + timedelta(days=rng.randint(0, 25_000)),
                                     rng.randint(0, 999)) for _ in range(count)})


def write_routing(path: Path, producers: int, url: str) -> None:
    """Every producer routed to the producers process and authorised for the bench consumer."""
    path.write_text(json.dumps({
        "routes": [{"logical_address": address(n), "endpoint": f"{url}/producers/{address(n)}"}
                   for n in range(producers)],
        "authorisations": [{"consumer_system": CONSUMER, "logical_address": address(n),
                            "categories": "*"} for n in range(producers)],
    }))


def server_env(plan: ServerPlan) -> dict[str, str]:
    return {**os.environ, ENV: json.dumps(asdict(plan))}


def bench_app() -> FastAPI:
    """The uvicorn factory of one query server process of the benchmark (as ``served_app``)."""
    from npo_platform.guard import BENCH_RATE_LIMIT
    from npo_platform.service import configure_process, freeze_startup_objects
    from npo_query.main import Parts, create_app  # not in the other processes

    plan = ServerPlan(**json.loads(os.environ[ENV]))
    over_http = {name: url for name, url in (("index_url", plan.index_url),
                                             ("consent_url", plan.consent_url)) if url}
    config = QuerySettings(kafka_bootstrap_servers=plan.bootstrap, consumer_system=CONSUMER,
                           run_consumers=False, ensure_topics=False, producer_timeout_s=5,
                           overall_deadline_s=8, decision_cache_ttl_s=5,
                           routing_file=Path(plan.routing_file), allow_loopback_routes=True,
                           rate_limit_user=BENCH_RATE_LIMIT,  # 200 readers share one token
                           access_topic=plan.access_topic).model_copy(update=over_http)
    verifier = TokenVerifier(Path(plan.public_key_file).read_bytes())
    # Over HTTP: the service's own HttpIndexClient / HttpConsentClient, as deployed.
    index = None if plan.index_url else StandInIndex(patients_of(plan.patients), plan.producers)
    consent = None if plan.consent_url else StandInConsent()
    parts = Parts(index=index, consent=consent, routing_store=InMemoryRoutingStore(),
                  tokens=lambda: plan.system_token,
                  producer_tokens=lambda endpoint: plan.system_token)  # bare producers check none
    configure_process(config)
    return freeze_startup_objects(create_app(config, token_verifier=verifier, parts=parts))


class StandInIndex:
    """Each patient has data at 1-4 producers, in 1-2 categories each."""

    def __init__(self, patients: list[str], producers: int, seed: int = 3) -> None:
        rng = random.Random(seed)  # noqa: S311 - benchmark data, not secrets
        # Per patient and service domain, found at once (a real index is another process).
        self.entries: dict[tuple[str, str], list[IndexEntry]] = {}
        for patient in patients:
            for n in rng.sample(range(producers), rng.randint(1, 4)):
                for category in rng.sample(AVAILABLE_CATEGORIES, rng.randint(1, 2)):
                    domain = category.service_domain
                    self.entries.setdefault((patient, domain), []).append(IndexEntry(
                        domain, category.categorizations[0], address(n),
                        address(n).replace("-LA", "-SYS"), address(n).replace("-LA", "-VG")))

    async def find(self, patient_id: str, service_domains: Sequence[str]) -> list[IndexEntry]:
        return self.engagements(patient_id, service_domains)

    def engagements(self, patient_id: str, service_domains: Sequence[str]) -> list[IndexEntry]:
        """The patient's engagements in ``service_domains``, in service domain order."""
        return [e for d in sorted(service_domains) for e in self.entries.get((patient_id, d), ())]


# Every engagement allowed on consent; the record policy closes one unit of a care giver no
# benchmark record is of, so every record is judged as under a real unit block, none dropped.
_BLOCKED_UNIT, _BLOCKED_GIVER = "SE2321000016-BLOCKED", "SE2321000016-BENCHVG"
BENCH_POLICY = RecordPolicy(_BLOCKED_GIVER, None, None, frozenset(), frozenset({_BLOCKED_UNIT}),
                            frozenset({_BLOCKED_GIVER}))
BENCH_POLICY_JSON = {"own_care_giver": _BLOCKED_GIVER, "own_closed": None, "others_closed": None,
                     "closed_care_givers": [], "closed_care_units": [_BLOCKED_UNIT],
                     "unit_blocked_care_givers": [_BLOCKED_GIVER]}


class StandInConsent:
    async def decide(self, bearer: str, patient_id: str, categories: list[str],
                     targets: list[Target]) -> Decision:
        verdicts = {t.id: EngagementVerdict(True, "consent", None) for t in targets}
        return Decision("allowed", "consent", None, verdicts=verdicts, policy=BENCH_POLICY)

    async def has_relation(self, bearer: str, patient_id: str) -> bool:
        return True


def serve_index(port: int, patients: int, producers: int) -> None:
    """Process entry: the stand-in index's engagements as FindContent over HTTP on ``port``."""
    uvloop.run(_serve(port, partial(IndexProtocol, StandInIndex(patients_of(patients), producers))))


class _LeanServer(asyncio.Protocol):
    """A bare HTTP/1.1 keep-alive server connection: httptools parses each request into ``url``
    and ``body``; ``on_message_complete`` answers it."""

    transport: asyncio.Transport  # from connection_made, before any data

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.url, self.body = b"", b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:  # httptools' callbacks
        self.url, self.body = b"", b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def bad_request(self) -> None:
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    def ok(self, answer: bytes) -> None:
        self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(answer), answer))


class IndexProtocol(_LeanServer):
    """``POST /find-content``: the stand-in's engagements of one patient in the service domains
    asked (``serviceDomains``), in one page, at once (a lean server like the producers', so that
    the figures show what the query service spends on the lookup, not a server's cost)."""

    def __init__(self, index: StandInIndex) -> None:
        super().__init__()
        self.index = index

    def on_message_complete(self) -> None:
        try:
            asked = json.loads(self.body)
            found = self.index.engagements(asked["registeredResidentIdentification"],
                                           asked["serviceDomains"])
        except (ValueError, KeyError, TypeError):
            self.bad_request()
            return
        self.ok(json.dumps({"engagements": [{
            "serviceDomain": e.service_domain, "categorization": e.categorization,
            "logicalAddress": e.logical_address, "sourceSystem": e.source_system,
            "dataController": e.data_controller, "mostRecentContent": e.most_recent_content}
            for e in found], "nextPageToken": None}).encode())


async def _serve(port: int, protocol: Callable[[], asyncio.Protocol]) -> None:
    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", port,
                                                            backlog=4096)
    await server.serve_forever()


def serve_consent(port: int) -> None:
    """Process entry: decisions that allow every engagement, over HTTP on ``port``."""
    uvloop.run(_serve(port, ConsentProtocol))


class ConsentProtocol(_LeanServer):
    """``POST /v1/decisions``: every engagement allowed on consent, at once (lean, as the
    index's stand-in: the figures show what the query service spends on the call)."""

    def on_message_complete(self) -> None:
        try:
            asked = json.loads(self.body)
            verdicts = [{"id": e["id"], "allowed": True, "basis": "consent"}
                        for e in asked["engagements"]]
        except (ValueError, KeyError, TypeError):
            self.bad_request()
            return
        self.ok(json.dumps({"outcome": "allowed", "basis": "consent",
                            "engagements": verdicts, "record_policy": BENCH_POLICY_JSON}).encode())


def serve_producers(port: int, latency_ms: float) -> None:
    """Process entry: the simulated producers on ``port`` until terminated."""
    uvloop.run(_serve(port, partial(ProducerProtocol, latency_ms / 1000)))


class ProducerProtocol(_LeanServer):
    """Every ``POST /producers/{address}/{category}`` answers two records after exactly L.

    The producers stand for other organisations' systems, on other machines in a deployment;
    here they share the two cores with the service under test, so they are as lean as an HTTP/1.1
    keep-alive server gets: httptools parses the requests, and the answer is written by a timer
    after L, without a coroutine or an ASGI stack per call (uvicorn + a bare ASGI app cost
    ~0.09 ms of CPU per call, ~0.35 ms per overview).
    """

    def __init__(self, latency_s: float) -> None:
        super().__init__()
        self.loop, self.latency_s = asyncio.get_running_loop(), latency_s  # made by the server

    def on_message_complete(self) -> None:
        self.loop.call_later(self.latency_s, self._answer, self.url, self.body)

    def _answer(self, url: bytes, body: bytes) -> None:
        if self.transport.is_closing():
            return
        try:
            _, _, producer, category = url.decode().split("/")
            patient = json.loads(body)["patientId"]
        except (ValueError, KeyError, TypeError):
            self.bad_request()
            return
        self.ok(json.dumps({"contract": category, "result": {"resultCode": "OK"},
                            "records": self.records(producer, patient, category),
                            "continuationToken": None}).encode())

    def records(self, producer: str, patient: str, category: str) -> list[dict[str, Any]]:
        """The two records of one answer."""
        return [_document(producer, patient, n) for n in range(2)]


def _document(producer: str, patient: str, n: int) -> dict[str, Any]:
    return {"header": {
        "documentId": f"{producer}-{n}", "sourceSystemHSAId": producer.replace("-LA", "-SYS"),
        "patientId": {"id": patient},
        "accountableHealthcareProfessional": {
            "authorTime": f"2025010{n + 1}120000",
            "healthcareProfessionalCareUnitHSAId": producer.replace("-LA", f"-VE00{n + 1}"),
            "healthcareProfessionalCareGiverHSAId": producer.replace("-LA", "-VG")},
        "approvedForPatient": True}, "body": {"description": "benchmark"}}


@dataclass(frozen=True)
class ReadPlan:
    url: str
    token: str
    patients: int
    readers: int
    warm_up_s: float
    seconds: float
    rate: float = 0.0  # queries/s offered (open loop); 0: closed loop, each reader at once again


# One query as the reader saw it: latency, latency - slowest producer call (ms), producer
# calls, distinct producers called, failed calls.
Sample = tuple[float, float, int, int, int]


def read(plan: ReadPlan, out: Connection) -> None:
    """Process entry: warm up, then measure; sends (samples, elapsed s, CPU s) back on ``out``."""
    out.send(uvloop.run(_read(plan, out)))
    out.close()


async def _read(plan: ReadPlan, out: Connection) -> tuple[list[Sample], float, float]:
    patients = patients_of(plan.patients)
    gc.collect()
    gc.freeze()  # the readers' own collector pauses would count as the service's latency
    url = urlsplit(plan.url)
    assert url.hostname is not None
    assert url.port is not None  # the bench serves on a port of its own
    readers = [ReaderConnection(url.hostname, url.port, plan.token) for _ in range(plan.readers)]
    try:
        await _phase(readers, patients, plan, plan.warm_up_s, [])
        samples: list[Sample] = []
        out.send("measuring")
        began, cpu = time.perf_counter(), time.process_time()
        await _phase(readers, patients, plan, plan.seconds, samples)
        return samples, time.perf_counter() - began, time.process_time() - cpu
    finally:
        for reader in readers:
            reader.close()


class ReaderConnection(asyncio.Protocol):
    """One reader's keep-alive HTTP/1.1 connection to the query service, as lean as the
    producers' server (the readers stand for clinicians' browsers on other machines, but here
    they share the two cores with the service: aiohttp's client cost ~0.15 ms of CPU per
    overview). httptools parses the answers; a closed connection is opened again before the
    next request. Plain HTTP on loopback only: a benchmark tool, not a client for anything else.
    """

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.head = (f"POST /v1/overview HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n").encode()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.parts: list[bytes] = []

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """The status and body of the answer to one overview request."""
        if self.transport is None or self.transport.is_closing():
            self.parser = httptools.HttpResponseParser(self)
            loop = asyncio.get_running_loop()
            await loop.create_connection(lambda: self, self.host, self.port)
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(b"%sContent-Length: %d\r\n\r\n%s" % (self.head, len(body), body))
        return await self.answer

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError("the query service closed the connection"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            if self.answer is not None and not self.answer.done():
                self.answer.set_exception(error)
            self.close()

    def on_message_begin(self) -> None:  # httptools' callbacks
        self.parts = []

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)

    def on_message_complete(self) -> None:
        keep_alive = self.parser.should_keep_alive()
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((self.parser.get_status_code(), b"".join(self.parts)))
        if not keep_alive:
            self.close()


async def _phase(readers: list[ReaderConnection], patients: list[str], plan: ReadPlan,
                 seconds: float, into: list[Sample]) -> None:
    """Closed loop (``rate`` 0): each reader asks again as soon as it has its answer. Open loop:
    query i is due at start + i/rate and the next free reader sends it; its latency counts from
    when it was due, so a saturated service (or reader pool) shows instead of lowering the rate."""
    start = time.perf_counter()  # not loop.time(): uvloop's has millisecond resolution
    stop = start + seconds
    due = iter(range(round(plan.rate * seconds))) if plan.rate else None

    async def reader(n: int) -> None:
        rng = random.Random(n)  # noqa: S311 - benchmark data, not secrets
        while time.perf_counter() < stop:
            began = time.perf_counter()
            if due is not None:
                if (i := next(due, None)) is None:
                    return
                began = start + i / plan.rate
                await asyncio.sleep(max(0.0, began - time.perf_counter()))
            into.append(await _one(readers[n], rng.choice(patients), began))

    await asyncio.gather(*(reader(n) for n in range(plan.readers)))


async def _one(reader: ReaderConnection, patient: str, began: float) -> Sample:
    body = json.dumps({"patientId": patient, "categories": []}).encode()
    status, content = await reader.post(body)
    took = (time.perf_counter() - began) * 1000
    if status != 200:
        raise RuntimeError(f"the overview answered {status}: {content[:200]!r}")
    out = json.loads(content)
    producers = out["producers"]
    slowest = max((p["durationMs"] for p in producers), default=0.0)
    failed = sum(p["status"] != "DataFromSource" for p in producers)
    called = len({p["logicalAddress"] for p in producers})
    return took, took - slowest, out["producersCalled"], called, failed
