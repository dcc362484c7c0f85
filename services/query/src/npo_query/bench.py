"""``npo bench query``: aggregation overhead and throughput against many fixed-latency producers.

What runs: ``producers_total`` simulated producers with a fixed latency L, virtual-hosted by
logical address in a separate process (a lean ASGI app under uvicorn: the simulated nation of
npo-simulator has only ~50 publishing organisations, and a service may not import it); the
query application in this process, driven through its ASGI interface by ``readers`` concurrent
readers (so the query's own HTTP server is not measured); a real Kafka broker for the access
events (the local stack's, else a scratch one started and stopped here). The index and the
consent service are in-memory stand-ins, so their network hops are not in the figures.

Overhead per query = query latency - the slowest called producer's call time as the
aggregator measured it (``overhead_vs_nominal_*`` subtract the nominal L instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import random
import socket
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
import typer

from npo_deploy import benchmarks
from npo_platform.categories import AVAILABLE_CATEGORIES
from npo_platform.identifiers import make_personnummer
from npo_platform.identity import Principal, Role, TokenVerifier, generate_keypair, issue_token
from npo_platform.kafka import EventPublisher

from .config import QuerySettings
from .decision import Decision, EngagementVerdict
from .domain import IndexEntry, Target
from .main import Parts, create_app
from .routing import Authorisation, Route
from .store import InMemoryRoutingStore

CONSUMER = "SE5565594230-NPOBENCH"


@dataclass(frozen=True)
class Sample:
    latency_ms: float
    overhead_ms: float
    calls: int  # producer calls (one per producer and category)
    producers: int  # distinct producers (logical addresses) called
    failed: int


@dataclass(frozen=True)
class Plan:
    producers: int
    latency_ms: float
    readers: int
    seconds: float
    patients: int


def bench_query(
    quick: bool = typer.Option(False, "--quick", help="a smaller run of a minute or two"),
    as_json: bool = typer.Option(False, "--json", help="print the figures as JSON on the last line"),
    latency_ms: float = typer.Option(20.0, help="the producers' fixed latency L"),
    readers: int = typer.Option(200, help="concurrent readers"),
    producers: int = typer.Option(300, help="simulated producers"),
    seconds: float = typer.Option(0.0, help="measuring time (default 20 s quick, 60 s full)"),
) -> None:
    """300 producers with fixed latency, 200 concurrent readers: overhead and queries/s."""
    plan = Plan(producers, latency_ms, readers, seconds or (20.0 if quick else 60.0),
                2_000 if quick else 10_000)
    broker = benchmarks.broker(QuerySettings().kafka_bootstrap_servers, "query")
    with broker as bootstrap, _producer_process(latency_ms) as url:
        figures = asyncio.run(_measure(plan, bootstrap, url))
    benchmarks.report(figures, as_json)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def _producer_process(latency_ms: float) -> Iterator[str]:
    port = _free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve_producers, args=(port, latency_ms), daemon=True)
    process.start()
    try:
        _wait_listening(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.join(10)


def _wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("the simulated producers did not start")


def _serve_producers(port: int, latency_ms: float) -> None:
    import uvicorn

    uvicorn.run(_ProducerApp(latency_ms / 1000), host="127.0.0.1", port=port, log_level="error",
                access_log=False)


class _ProducerApp:
    """Every ``/producers/{address}/{category}`` answers two records after exactly L."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await asyncio.sleep(self.latency_s)
        _, _, address, category = scope["path"].split("/")
        patient = json.loads(body)["patientId"]
        answer = json.dumps({"contract": category, "result": {"resultCode": "OK"},
                             "records": [_document(address, patient, n) for n in range(2)],
                             "continuationToken": None}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


def _document(address: str, patient: str, n: int) -> dict[str, Any]:
    return {"header": {
        "documentId": f"{address}-{n}", "sourceSystemHSAId": address.replace("-LA", "-SYS"),
        "patientId": {"id": patient},
        "accountableHealthcareProfessional": {"authorTime": f"2025010{n + 1}120000"},
        "approvedForPatient": True}, "body": {"description": "benchmark"}}


def _address(n: int) -> str:
    return f"SE{2321000000 + n:010d}-LA"


class _Index:
    """Each patient has data at 1-4 producers, in 1-2 categories each."""

    def __init__(self, patients: list[str], producers: int, seed: int = 3) -> None:
        rng = random.Random(seed)  # noqa: S311 - benchmark data, not secrets
        self.entries: dict[str, list[IndexEntry]] = {}
        for patient in patients:
            found = []
            for n in rng.sample(range(producers), rng.randint(1, 4)):
                for category in rng.sample(AVAILABLE_CATEGORIES, rng.randint(1, 2)):
                    found.append(IndexEntry(category.service_domain, category.categorizations[0],
                                            _address(n), _address(n).replace("-LA", "-SYS"),
                                            _address(n).replace("-LA", "-VG")))
            self.entries[patient] = found

    async def find(self, patient_id: str, service_domain: str) -> list[IndexEntry]:
        return [e for e in self.entries.get(patient_id, []) if e.service_domain == service_domain]


class _Consent:
    async def decide(self, bearer: str, patient_id: str, categories: list[str],
                     targets: list[Target]) -> Decision:
        verdicts = {t.id: EngagementVerdict(True, "consent", None) for t in targets}
        return Decision("allowed", "consent", None, verdicts=verdicts)


async def _measure(plan: Plan, bootstrap: str, url: str) -> dict[str, Any]:
    private, public = generate_keypair()
    rng = random.Random(11)  # noqa: S311 - benchmark data, not secrets
    patients = sorted({make_personnummer(date(1940, 1, 1) + timedelta(days=rng.randint(0, 25_000)),
                                         rng.randint(0, 999)) for _ in range(plan.patients)})
    store = InMemoryRoutingStore()
    await store.put_routes(Route(_address(n), f"{url}/producers/{_address(n)}")
                           for n in range(plan.producers))
    await store.put_authorisations(Authorisation(CONSUMER, _address(n), "*")
                                   for n in range(plan.producers))
    config = QuerySettings(kafka_bootstrap_servers=bootstrap, consumer_system=CONSUMER,
                           run_consumers=False, producer_timeout_s=5, overall_deadline_s=8,
                           decision_cache_ttl_s=5)
    system = issue_token(private, Principal(sub="SE5565594230-NPOAGP", name="q",
                                            roles=frozenset({Role.SYSTEM})), timedelta(hours=1))
    publisher = EventPublisher(bootstrap, client_id="npo-bench-query", linger_ms=0)
    await publisher.start()
    app = create_app(config, token_verifier=TokenVerifier(public), parts=Parts(
        index=_Index(patients, plan.producers), consent=_Consent(), routing_store=store,
        publisher=publisher, tokens=lambda: system))
    try:
        async with app.router.lifespan_context(app):
            return await _drive(app, plan, patients, private)
    finally:
        await publisher.stop()


async def _drive(app: Any, plan: Plan, patients: list[str], private: bytes) -> dict[str, Any]:
    clinician = Principal(sub="SE2321000016-A1B2", name="Bench", roles=frozenset({Role.CLINICIAN}),
                          care_unit="SE2321000016-U001", care_giver="SE2321000016-G001",
                          assignment="A1", purpose="care")
    headers = {"Authorization": f"Bearer {issue_token(private, clinician, timedelta(hours=1))}"}
    samples: list[Sample] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://query.bench",
                                 timeout=30) as client:
        await _phase(client, headers, patients, plan, min(5.0, plan.seconds / 4), [])
        began, cpu = time.perf_counter(), time.process_time()
        await _phase(client, headers, patients, plan, plan.seconds, samples)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    figures = _figures(samples, elapsed, plan)
    # CPU of this process (query service and the in-process readers) per query: what one core
    # could serve, whatever else the machine is doing.
    figures["cpu_ms_per_query"] = round(1000 * cpu / max(1, len(samples)), 2)
    return figures


async def _phase(client: httpx.AsyncClient, headers: dict[str, str], patients: list[str],
                 plan: Plan, seconds: float, into: list[Sample]) -> None:
    stop = time.perf_counter() + seconds

    async def reader(n: int) -> None:
        rng = random.Random(n)  # noqa: S311 - benchmark data, not secrets
        while time.perf_counter() < stop:
            body = {"patientId": rng.choice(patients), "categories": []}
            began = time.perf_counter()
            answer = await client.post("/v1/overview", json=body, headers=headers)
            took = (time.perf_counter() - began) * 1000
            out = answer.json()
            slowest = max((p["durationMs"] for p in out["producers"]), default=0.0)
            failed = sum(p["status"] != "DataFromSource" for p in out["producers"])
            addresses = len({p["logicalAddress"] for p in out["producers"]})
            into.append(Sample(took, took - slowest, out["producersCalled"], addresses, failed))

    await asyncio.gather(*(reader(n) for n in range(plan.readers)))


def _figures(samples: list[Sample], elapsed: float, plan: Plan) -> dict[str, Any]:
    latency = sorted(s.latency_ms for s in samples)
    overhead = sorted(s.overhead_ms for s in samples)
    nominal = sorted(s.latency_ms - plan.latency_ms for s in samples)
    calls = statistics.fmean(s.calls for s in samples) if samples else 0.0
    producers = statistics.fmean(s.producers for s in samples) if samples else 0.0
    return {
        "queries_per_s": round(len(samples) / elapsed, 1),
        "overhead_p50_ms": round(_pct(overhead, 50), 2),
        "overhead_p99_ms": round(_pct(overhead, 99), 2),
        "overhead_vs_nominal_p50_ms": round(_pct(nominal, 50), 2),
        "overhead_vs_nominal_p99_ms": round(_pct(nominal, 99), 2),
        "latency_p50_ms": round(_pct(latency, 50), 2),
        "latency_p99_ms": round(_pct(latency, 99), 2),
        "producers_called_per_query": round(producers, 2),
        "producers_with_data_per_query": round(producers, 2),
        "producer_calls_per_query": round(calls, 2),
        "producers_total": plan.producers,
        "broadcast_calls_per_query": plan.producers * len(AVAILABLE_CATEGORIES),
        "failed_producer_calls": sum(s.failed for s in samples),
        "queries": len(samples), "readers": plan.readers, "producer_latency_ms": plan.latency_ms,
        "seconds": round(elapsed, 1),
    }


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))]

