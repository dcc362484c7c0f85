"""``npo bench query``: aggregation overhead and throughput against many fixed-latency producers.

What runs, each in its own process so that each one's CPU is measured apart (bench_load.py):
``producers_total`` simulated producers with a fixed latency L (a bare HTTP/1.1 server on
uvloop and httptools; the simulated nation of npo-simulator has only ~50 publishing
organisations, and a service may not import it); the query service as ``npo-query`` serves
it (uvicorn, ``--workers`` server processes, uvloop + httptools) with in-memory index and
consent stand-ins, so their network hops are not in the figures unless asked
(``--index-over-http``, ``--consent-over-http``: bare HTTP/1.1 stand-ins in processes of their
own, asked with the service's own clients); ``readers`` concurrent
closed-loop readers (a bare HTTP/1.1 client) in one more process; a real Kafka broker for the access
events (the local stack's, else a scratch one).

Overhead per query = query latency - the slowest called producer's call time as the
aggregator measured it (``overhead_vs_nominal_*`` subtract the nominal L instead).
CPU per query is reported per process (query servers, producers, readers, broker when found).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import typer

from npo_bench import cpu, harness
from npo_bench import query_load as load
from npo_platform.categories import AVAILABLE_CATEGORIES
from npo_platform.identity import Principal, Role, generate_keypair, issue_token
from npo_platform.kafka_admin import ensure_event_topics
from npo_query.config import QuerySettings


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
    workers: int = 1
    rate: float = 0.0
    index_over_http: bool = False
    consent_over_http: bool = False


def bench_query(
    quick: bool = typer.Option(False, "--quick", help="a smaller run of a minute or two"),
    as_json: bool = typer.Option(False, "--json", help="print the figures as JSON on the last line"),
    latency_ms: float = typer.Option(20.0, help="the producers' fixed latency L"),
    readers: int = typer.Option(200, help="concurrent readers"),
    producers: int = typer.Option(300, help="simulated producers"),
    seconds: float = typer.Option(0.0, help="measuring time (default 20 s quick, 60 s full)"),
    workers: int = typer.Option(2, min=1, help="query server processes (QUERY_WORKERS)"),
    rate: float = typer.Option(0.0, min=0.0, help="queries/s offered by the readers (open "
                               "loop, latency from the due time); 0: closed loop"),
    index_over_http: bool = typer.Option(False, "--index-over-http", help="the query service "
                                         "asks a stand-in index over HTTP with its own client, "
                                         "as deployed (default: an in-process stand-in)"),
    consent_over_http: bool = typer.Option(False, "--consent-over-http", help="the same for "
                                           "the consent service's decisions (cached ≤5 s per "
                                           "process, so asked on a cache miss)"),
) -> None:
    """300 producers with fixed latency, 200 concurrent readers: overhead and queries/s."""
    plan = Plan(producers, latency_ms, readers, seconds or (20.0 if quick else 60.0),
                2_000 if quick else 10_000, workers, rate, index_over_http, consent_over_http)
    broker = harness.broker(QuerySettings().kafka_bootstrap_servers, "query")
    with (broker as bootstrap,
          _serving(load.serve_producers, latency_ms) as (url, producers_pid),
          _serving_if(index_over_http, load.serve_index, plan.patients, producers)
          as (index_url, index_pid),
          _serving_if(consent_over_http, load.serve_consent) as (consent_url, consent_pid)):
        pids = {"producers": producers_pid, "index": index_pid, "consent": consent_pid}
        figures = _measure(plan, bootstrap, url, pids, index_url, consent_url)
    harness.report(figures, as_json)
    if figures["failed_producer_calls"]:  # timeouts or refused connections: not the figures asked
        typer.echo(f"warning: {figures['failed_producer_calls']} producer calls failed; the "
                   "figures do not describe the aggregation of answered calls", err=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def _serving(target: Callable[..., None], *args: Any) -> Iterator[tuple[str, int]]:
    """``target(port, *args)`` in a process of its own: its base URL and pid."""
    port = _free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=target, args=(port, *args), daemon=True)
    process.start()
    try:
        _wait_listening(port)
        yield f"http://127.0.0.1:{port}", process.pid or 0
    finally:
        process.terminate()
        process.join(10)


def _serving_if(wanted: bool, target: Callable[..., None],
                *args: Any) -> contextlib.AbstractContextManager[tuple[str, int]]:
    """``_serving`` when ``wanted``; else no process, an empty URL and pid 0 (in-process)."""
    return _serving(target, *args) if wanted else contextlib.nullcontext(("", 0))


def _wait_listening(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def _measure(plan: Plan, bootstrap: str, url: str, pids: dict[str, int],
             index_url: str, consent_url: str) -> dict[str, Any]:
    private, public = generate_keypair()
    config = QuerySettings(kafka_bootstrap_servers=bootstrap)
    asyncio.run(ensure_event_topics(bootstrap, [config.access, config.consent, config.changes]))
    system = issue_token(private, Principal(sub="SE5565594230-NPOAGP", name="q",
                                            roles=frozenset({Role.SYSTEM})), timedelta(hours=1))
    clinician = Principal(sub="SE2321000016-A1B2", name="Bench", roles=frozenset({Role.CLINICIAN}),
                          care_unit="SE2321000016-U001", care_giver="SE2321000016-G001",
                          assignment="A1", purpose="care")
    with tempfile.TemporaryDirectory(prefix="npo-query-bench-") as home:
        (Path(home) / "public.pem").write_bytes(public)
        load.write_routing(Path(home) / "routing.json", plan.producers, url)
        server_plan = load.ServerPlan(plan.producers, plan.patients, bootstrap,
                                      str(Path(home) / "routing.json"),
                                      str(Path(home) / "public.pem"), system, config.access_topic,
                                      index_url, consent_url)
        port = _free_port()
        with _query_server(server_plan, port, plan.workers) as server:
            read = load.ReadPlan(f"http://127.0.0.1:{port}",
                                 issue_token(private, clinician, timedelta(hours=1)),
                                 plan.patients, plan.readers, min(5.0, plan.seconds / 4),
                                 plan.seconds, plan.rate)
            return _drive(plan, read, {"query": server.pid, **pids,
                                       "broker": cpu.listener(bootstrap)})


@contextlib.contextmanager
def _query_server(plan: load.ServerPlan, port: int, workers: int) -> Iterator[psutil.Popen]:
    env = load.server_env(plan) | {"NPO_LOG_LEVEL": "WARNING"}
    # As main.run serves it (factory, workers, uvloop and httptools), without the access log.
    command = [sys.executable, "-m", "uvicorn", "--factory", "npo_bench.query_load:bench_app",
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
               "--no-access-log", "--log-level", "warning", "--backlog", "4096"]
    server = psutil.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port)
        time.sleep(1.0 + workers)  # every worker's lifespan (publisher, routing) done
        yield server
    finally:
        server.terminate()
        server.wait(30)


def _drive(plan: Plan, read: load.ReadPlan, pids: dict[str, int]) -> dict[str, Any]:
    receiving, sending = multiprocessing.Pipe(duplex=False)
    readers = multiprocessing.get_context("spawn").Process(target=load.read, args=(read, sending))
    readers.start()
    receiving.recv()  # warmed up: the measured phase begins
    meter = cpu.Meter({name: partial(cpu.tree, pid) for name, pid in pids.items() if pid})
    load_before = os.getloadavg()[0]
    samples, elapsed, reader_cpu = receiving.recv()
    spent = meter.spent()
    readers.join(30)
    figures = _figures([Sample(*s) for s in samples], elapsed, plan)
    count = max(1, len(samples))
    per_query = {f"cpu_ms_per_query_{name}": round(1000 * seconds / count, 3)
                 for name, seconds in spent.items() if name != "total"}
    per_query["cpu_ms_per_query_readers"] = round(1000 * reader_cpu / count, 3)
    figures.update(per_query)
    figures["cpu_ms_per_query_total"] = round(sum(per_query.values()), 3)
    figures["query_workers"] = plan.workers
    figures["offered_queries_per_s"] = plan.rate or "closed loop"
    figures["index"] = "over HTTP" if plan.index_over_http else "in-process stand-in"
    figures["consent"] = "over HTTP" if plan.consent_over_http else "in-process stand-in"
    figures["load_average_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return figures


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

