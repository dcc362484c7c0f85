"""``npo bench riv``: the national platform's contracts (RIV-TA) under load.

- ``update_engagements_per_s``: SOAP ``Update`` of 1000 engagements a call into the real index
  (its app under uvicorn in a process of its own, on the real broker and database), each call
  answered once the broker acknowledged its engagements; ``calls`` calls, ``concurrency`` at a
  time, from messages built before the clock starts. CPU per engagement is the index process's.
- ``aggregated_overhead_p99_ms``: the query service as ``npo bench query`` runs it (in-memory
  index and consent stand-ins, lean producers in a process of their own answering two records
  per call after L) asked for the same (patient, category) pairs over JSON (``/v1/overview``,
  that one category) and over the category's read contract, interleaved, each at ``rate`` q/s
  open loop (riv_load.py); the RIV-TA read's p99 minus the JSON overview's.

``--profile DIR`` records the index process with py-spy during the Update phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import httpx
import psutil
import typer
from fastapi import FastAPI

from npo_bench import cpu, harness, query_load
from npo_bench import query as query_bench
from npo_bench import riv_load as load
from npo_index.config import IndexSettings
from npo_platform.guard import BENCH_RATE_LIMIT
from npo_platform.identity import Principal, Role, TokenVerifier, generate_keypair, issue_token
from npo_platform.kafka_admin import ensure_event_topics
from npo_query.config import QuerySettings
from npo_rivta.contracts import UPDATE
from npo_rivta.soap import CONTENT_TYPE

ENV = "NPO_RIV_BENCH"
ENGAGEMENTS_PER_CALL = 1000


@dataclass(frozen=True)
class Size:
    calls: int
    concurrency: int
    seconds: float
    rate: float


QUICK = Size(calls=60, concurrency=4, seconds=20.0, rate=100.0)
FULL = Size(calls=300, concurrency=4, seconds=60.0, rate=100.0)


def bench_riv(
    quick: Annotated[bool, typer.Option("--quick", help="a smaller run of a minute or two")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="figures as one JSON object, last line")] = False,
    profile: Annotated[Path | None, typer.Option(
        help="record the index with py-spy into this directory during the Update phase")] = None,
    only: Annotated[str, typer.Option(help="'update' or 'read': run one half only")] = "",
) -> None:
    """SOAP Update into the index (engagements/s); aggregated RIV-TA reads' p99 over JSON's."""
    size = QUICK if quick else FULL
    figures: dict[str, Any] = {"load_average_1m_start": round(os.getloadavg()[0], 2)}
    with harness.broker(QuerySettings().kafka_bootstrap_servers, "riv") as bootstrap:
        if only in ("", "update"):
            with harness.database(IndexSettings().database_url, "riv") as database_url:
                figures |= _updates(size, bootstrap, database_url, profile)
        if only in ("", "read"):
            figures |= _reads(size, bootstrap)
    figures["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    harness.report(figures, as_json)


# --- SOAP Update into the index -----------------------------------------------------------------

@dataclass(frozen=True)
class IndexPlan:
    """What the index process needs (passed as JSON in ENV)."""

    bootstrap: str
    database_url: str
    schema: str
    updates_topic: str
    changes_topic: str
    public_key_file: str


def index_app() -> FastAPI:
    """The uvicorn factory of the benchmark's index process: the real app, its own topics and
    schema, no ingest consumer (only the Update path is measured)."""
    from npo_index.main import create_app  # not in the other processes
    from npo_platform.service import configure_process, freeze_startup_objects

    plan = IndexPlan(**json.loads(os.environ[ENV]))
    settings = IndexSettings(kafka_bootstrap_servers=plan.bootstrap, database_url=plan.database_url,
                             db_schema=plan.schema, updates_topic=plan.updates_topic,
                             changes_topic=plan.changes_topic, run_consumer=False,
                             consumer_group=f"bench-{plan.schema}",
                             rate_limit_user=BENCH_RATE_LIMIT)  # one producer's burst of Updates
    configure_process(settings)
    verifier = TokenVerifier(Path(plan.public_key_file).read_bytes())
    return freeze_startup_objects(create_app(settings, token_verifier=verifier))


def _updates(size: Size, bootstrap: str, database_url: str, profile: Path | None) -> dict[str, Any]:
    private, public = generate_keypair()
    run = uuid.uuid4().hex[:8]
    token = issue_token(private, load.SENDER, timedelta(hours=1))
    with tempfile.TemporaryDirectory(prefix="npo-riv-bench-") as home:
        (Path(home) / "public.pem").write_bytes(public)
        plan = IndexPlan(bootstrap, database_url, f"bench_riv_{run}", f"bench.riv.{run}.updates",
                         f"bench.riv.{run}.changes", str(Path(home) / "public.pem"))
        messages = [load.update_message(n) for n in range(size.calls + 3)]
        port = query_bench._free_port()
        with _index_server(plan, port) as server, _profiling(profile, server.pid):
            url = f"http://127.0.0.1:{port}{UPDATE.path}"
            rate, elapsed, cpu_s = asyncio.run(_send(url, token, messages, size.concurrency,
                                                     server.pid))
    engagements = size.calls * ENGAGEMENTS_PER_CALL
    return {"update_engagements_per_s": round(rate), "update_calls": size.calls,
            "update_concurrency": size.concurrency, "update_seconds": round(elapsed, 2),
            "update_index_cpu_us_per_engagement": round(1e6 * cpu_s / engagements, 1)}


@contextlib.contextmanager
def _index_server(plan: IndexPlan, port: int) -> Iterator[psutil.Popen]:
    env = {**os.environ, ENV: json.dumps(asdict(plan)), "NPO_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "uvicorn", "--factory", "npo_bench.riv:index_app",
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
               "--log-level", "warning"]
    server = psutil.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        query_bench._wait_listening(port)
        yield server
    finally:
        server.terminate()
        server.wait(30)


@contextlib.contextmanager
def _profiling(directory: Path | None, pid: int) -> Iterator[None]:
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    out = directory / f"index-update-{time.strftime('%H%M%S')}.txt"
    recorder = subprocess.Popen([str(spy), "record", "--pid", str(pid), "--rate", "200",
                                 "--format", "raw", "--output", str(out), "--nonblocking"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        recorder.send_signal(2)  # SIGINT: py-spy writes what it recorded
        recorder.wait(30)
        typer.echo(f"profile: {out}", err=True)


async def _send(url: str, token: str, messages: list[bytes], concurrency: int,
                pid: int) -> tuple[float, float, float]:
    """Engagements/s over the measured calls (the first three warm up), elapsed s, index CPU s."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": CONTENT_TYPE,
               "SOAPAction": f'"{UPDATE.soap_action}"'}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for message in messages[:3]:
            await _update(client, url, message, headers)
        queue = list(messages[3:])
        meter = cpu.Meter({"index": partial(cpu.tree, pid)})
        began = time.perf_counter()

        async def worker() -> None:
            while queue:
                await _update(client, url, queue.pop(), headers)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    sent = (len(messages) - 3) * ENGAGEMENTS_PER_CALL
    return sent / elapsed, elapsed, meter.spent()["index"]


async def _update(client: httpx.AsyncClient, url: str, message: bytes,
                  headers: dict[str, str]) -> None:
    answer = await client.post(url, content=message, headers=headers)
    if answer.status_code != 200 or b"<tns:ResultCode>OK<" not in answer.content:
        raise RuntimeError(f"Update answered {answer.status_code}: {answer.text[:300]}")


# --- aggregated reads: RIV-TA against JSON ----------------------------------------------------

def _reads(size: Size, bootstrap: str) -> dict[str, Any]:
    private, public = generate_keypair()
    config = QuerySettings(kafka_bootstrap_servers=bootstrap)
    asyncio.run(ensure_event_topics(bootstrap, [config.access, config.consent, config.changes]))
    system = issue_token(private, Principal(sub="SE5565594230-NPOAGP", name="q",
                                            roles=frozenset({Role.SYSTEM})), timedelta(hours=1))
    with (tempfile.TemporaryDirectory(prefix="npo-riv-bench-") as home,
          query_bench._serving(load.serve_producers, load.LATENCY_MS) as (url, producers_pid)):
        query_load.write_routing(Path(home) / "routing.json", load.PRODUCERS, url)
        (Path(home) / "public.pem").write_bytes(public)
        server_plan = query_load.ServerPlan(load.PRODUCERS, load.PATIENTS, bootstrap,
                                            str(Path(home) / "routing.json"),
                                            str(Path(home) / "public.pem"), system,
                                            config.access_topic)
        port = query_bench._free_port()
        with query_bench._query_server(server_plan, port, workers=2) as server:
            plan = load.ReadPlan(f"http://127.0.0.1:{port}", issue_token(
                private, load.READER, timedelta(hours=1)), size.rate, 5.0, size.seconds)
            return _drive(plan, {"query": server.pid, "producers": producers_pid})


def _drive(plan: load.ReadPlan, pids: dict[str, int]) -> dict[str, Any]:
    receiving, sending = multiprocessing.Pipe(duplex=False)
    reader = multiprocessing.get_context("spawn").Process(target=load.read, args=(plan, sending))
    reader.start()
    same = receiving.recv()  # warmed up, and the two protocols' records compared
    meter = cpu.Meter({name: partial(cpu.tree, pid) for name, pid in pids.items()})
    samples: dict[str, list[float]] = receiving.recv()
    spent = meter.spent()
    reader.join(30)
    json_p99, riv_p99 = (query_bench._pct(sorted(samples[k]), 99) for k in ("json", "riv"))
    count = max(1, len(samples["json"]) + len(samples["riv"]))
    return {
        "aggregated_overhead_p99_ms": round(riv_p99 - json_p99, 2),
        "read_json_p50_ms": round(query_bench._pct(sorted(samples["json"]), 50), 2),
        "read_json_p99_ms": round(json_p99, 2),
        "read_riv_p50_ms": round(query_bench._pct(sorted(samples["riv"]), 50), 2),
        "read_riv_p99_ms": round(riv_p99, 2),
        "reads_per_protocol": min(len(samples["json"]), len(samples["riv"])),
        "read_rate_per_protocol_per_s": plan.rate,
        "read_records_same_over_both": same,
        "read_query_cpu_ms_per_read": round(1000 * spent["query"] / count, 3),
    }
