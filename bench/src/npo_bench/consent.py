"""``npo bench consent``: decision latency in-process and over HTTP at a steady rate.

Needs only PostgreSQL (decisions read the patient's state; no broker is involved): it uses the
configured database when it answers, else starts a scratch server and stops it afterwards. The
HTTP figures come from the service as ``npo-consent`` runs it (``main.run``: uvicorn with
``CONSENT_WORKERS`` processes, background work off) driven open-loop at a fixed rate; latency
is measured from each request's scheduled time, so a lagging client shows up in the figures
instead of hiding them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import typer
import uvloop

from npo_bench import harness
from npo_consent import domain_commands as c
from npo_consent.config import ConsentSettings
from npo_consent.domain import EngagementRef, Reader, decide
from npo_consent.service import KNOWN_CATEGORIES, ConsentService
from npo_consent.store_pg import open_store
from npo_platform.guard import BENCH_RATE_LIMIT
from npo_platform.identifiers import make_personnummer
from npo_platform.identity import Principal, Role, ensure_local_keypair, issue_token

SCHEMA = "consent_bench"
CG_A, UA1 = "SE2321000016-BNCA", "SE2321000016-BNU1"
CG_B, UB1, UB2 = "SE2321000032-BNCB", "SE2321000032-BNU1", "SE2321000032-BNU2"
READER = Reader("SE2321000016-BNRD", UA1, CG_A, "care")
STAFF = c.Staff("SE2321000016-BNAD", "Bench registrar", UA1, CG_A)
HOLDER = c.Staff("SE2321000032-BNAD", "Bench registrar at B", UB2, CG_B)  # blocks its own records
CATEGORIES = ["diagnoses", "medications", "notes"]
ENGAGEMENTS = [
    EngagementRef(f"e{i}", (CG_A, CG_B, CG_B)[i % 3], (UA1, UB1, UB2)[i % 3], social_services=i == 9)
    for i in range(10)
]


@dataclass(frozen=True)
class Plan:
    patients: int
    in_process: int
    http_rate: int
    http_seconds: float
    server_workers: int = 1


WARM_UP_S = 2.0
CLIENT_WORKERS = 32
QUICK = Plan(patients=100, in_process=20_000, http_rate=500, http_seconds=20)
FULL = Plan(patients=1000, in_process=200_000, http_rate=500, http_seconds=60)


def bench(
    quick: Annotated[bool, typer.Option("--quick", help="a smaller run (about a minute)")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="figures as JSON on the last line")] = False,
    rate: Annotated[int, typer.Option(min=1, help="HTTP decisions per second")] = 500,
    workers: Annotated[int, typer.Option(min=1, help="server processes (uvicorn workers)")] = 1,
) -> None:
    """Decision latency p50/p99 in-process and over HTTP at 500 decisions/s, and decisions/s."""
    plan = replace(QUICK if quick else FULL, http_rate=rate, server_workers=workers)
    database = harness.database(ConsentSettings().database_url, "consent")
    with (database as url, tempfile.TemporaryDirectory(prefix="npo-consent-bench-") as home,
          asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner):  # uvloop, as uvicorn
        figures = runner.run(_run(url, Path(home), plan))
    harness.report(figures, json_output)


async def _run(url: str, home: Path, plan: Plan) -> dict[str, Any]:
    store = await open_store(url, SCHEMA, max_size=4)
    try:
        service = ConsentService(store)
        patients = await _seed(service, plan.patients)
        state = await store.load_patient(patients[0])
    finally:
        await store.close()
    figures = _in_process(state, plan.in_process)
    gc.collect()
    gc.freeze()  # the load client's own collector pauses would count as latency
    figures.update(await _over_http(url, home, patients, plan))
    figures["server_workers"] = plan.server_workers
    return figures


async def _seed(service: ConsentService, count: int) -> list[str]:
    """Patients with a relation, a consent, a unit block, a lift and (every tenth) protection."""
    run = int(time.time()) % 80
    patients = [make_personnummer(date(1930 + run, 1 + i // 28 % 12, 1 + i % 28), i % 1000)
                for i in range(count)]
    until = datetime.now(UTC) + timedelta(days=1)
    for i, patient in enumerate(patients):
        await service.register(c.RegisterRelation(patient, UA1), STAFF)
        await service.register(c.RegisterConsent(patient, until, care_unit=UA1), STAFF)
        block = await service.register(c.RegisterBlock(patient, CG_B, UB2), HOLDER)
        if i % 2:
            lift = c.RegisterLift(patient, block.id, "care", until, True, user=READER.user)
            await service.register(lift, HOLDER)
        if i % 10 == 0:
            await service.register(c.MarkProtectedIdentity(patient), STAFF)
    return patients


def _in_process(state: Any, count: int) -> dict[str, Any]:
    at = datetime.now(UTC)
    timings = []
    began = time.perf_counter()
    for _ in range(count):
        start = time.perf_counter_ns()
        decide(READER, state, CATEGORIES, ENGAGEMENTS, at, KNOWN_CATEGORIES)
        timings.append(time.perf_counter_ns() - start)
    elapsed = time.perf_counter() - began
    return {
        "decision_p50_us": round(_quantile(timings, 0.50) / 1000, 1),
        "decision_p99_us": round(_quantile(timings, 0.99) / 1000, 1),
        "decisions_per_s": round(count / elapsed),
        "in_process_engagements_per_decision": len(ENGAGEMENTS),
    }


async def _over_http(url: str, home: Path, patients: list[str], plan: Plan) -> dict[str, Any]:
    private, public = ensure_local_keypair(home / "keys")
    port = _free_port()
    server = _start_server(url, public, port, home, plan.server_workers)
    try:
        base = f"http://127.0.0.1:{port}"
        await _wait_healthy(base, server)
        token = issue_token(private.read_bytes(), _principal(), timedelta(hours=2))
        cpu_before = _cpu_seconds(server.pid)
        figures = await _drive(base, token, patients, plan)
        requests = figures["http_requests"] + int(plan.http_rate * WARM_UP_S)
        figures["server_cpu_ms_per_request"] = round(
            (_cpu_seconds(server.pid) - cpu_before) * 1000 / requests, 3)
        return figures
    finally:
        server.terminate()
        server.wait(timeout=30)


def _cpu_seconds(pid: int) -> float:
    """CPU time of the server process and its workers."""
    import psutil

    server = psutil.Process(pid)
    processes = [server, *server.children(recursive=True)]
    return float(sum(p.cpu_times().user + p.cpu_times().system for p in processes))


def _principal() -> Principal:
    return Principal(sub=READER.user, name="Bench reader", roles=frozenset({Role.CLINICIAN}),
                     care_unit=READER.care_unit, care_giver=READER.care_giver,
                     assignment="bench", purpose=READER.purpose)


def _start_server(
    url: str, public_key: Path, port: int, home: Path, workers: int
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ, "DATABASE_URL": url, "CONSENT_DB_SCHEMA": SCHEMA, "CONSENT_BACKGROUND": "false",
        "NPO_JWT_PUBLIC_KEY_PATH": str(public_key), "NPO_STATE_DIR": str(home), "NPO_LOG_LEVEL": "WARNING",
    }
    env |= {"CONSENT_HTTP_HOST": "127.0.0.1", "CONSENT_HTTP_PORT": str(port),
            "CONSENT_WORKERS": str(workers), "CONSENT_RATE_LIMIT_USER": BENCH_RATE_LIMIT}
    command = [sys.executable, "-c", "from npo_consent.main import run; run()"]
    return subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)


async def _wait_healthy(base: str, server: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession(base) as session:
        for _ in range(300):
            if server.poll() is not None:
                raise RuntimeError("the consent server exited during start-up")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get("/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError("the consent server did not become healthy")


async def _drive(base: str, token: str, patients: list[str], plan: Plan) -> dict[str, Any]:
    engagements = [{"id": e.id, "data_controller": e.data_controller, "care_unit": e.care_unit,
                    "social_services": e.social_services} for e in ENGAGEMENTS]
    bodies = [json.dumps({"patient_id": p, "categories": CATEGORIES, "engagements": engagements}).encode()
              for p in patients]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    # aiohttp, not httpx, drives the load: httpx's pool costs the client more CPU than the server.
    connector = aiohttp.TCPConnector(limit=CLIENT_WORKERS)
    async with aiohttp.ClientSession(base, headers=headers, connector=connector) as session:
        await _steady(session, bodies, plan.http_rate, WARM_UP_S)  # connections and caches
        began, cpu = time.perf_counter(), time.process_time()
        results = await _steady(session, bodies, plan.http_rate, plan.http_seconds)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    scheduled = [r[0] for r in results]
    return {
        "http_p50_ms": round(_quantile(scheduled, 0.50) * 1000, 2),
        "http_p99_ms": round(_quantile(scheduled, 0.99) * 1000, 2),
        "http_p99_ms_from_send": round(_quantile([r[1] for r in results], 0.99) * 1000, 2),
        "http_rate_target_per_s": plan.http_rate,
        "http_decisions_per_s": round(len(results) / elapsed),
        "http_requests": len(results),
        "http_failures": sum(1 for r in results if not r[2]),
        "client_cpu_ms_per_request": round(cpu * 1000 / len(results), 3),
    }


async def _steady(
    session: aiohttp.ClientSession, bodies: list[bytes], rate: int, seconds: float
) -> list[tuple[float, float, bool]]:
    """Open loop: request i is due at start + i/rate; a pool of workers sends each when due.

    A request whose worker was still busy goes out late, and that lateness counts in its
    latency (measured from when it was due), so a saturated server cannot hide.
    """
    clock = time.perf_counter  # not loop.time(): uvloop's has millisecond resolution
    start = clock() + 0.05
    total = int(rate * seconds)
    indexes = iter(range(total))
    results: list[tuple[float, float, bool]] = []

    async def worker() -> None:
        for i in indexes:
            due = start + i / rate
            if (delay := due - clock()) > 0:
                await asyncio.sleep(delay)
            results.append(await _one(session, bodies[i % len(bodies)], due))

    await asyncio.gather(*(worker() for _ in range(CLIENT_WORKERS)))
    return results


async def _one(session: aiohttp.ClientSession, body: bytes, due: float) -> tuple[float, float, bool]:
    sent = time.perf_counter()
    async with session.post("/v1/decisions", data=body) as response:
        answer = await response.read()
    done = time.perf_counter()
    ok = response.status == 200 and b'"outcome":"partial"' in answer
    return done - due, done - sent, ok


def _quantile(values: list[float] | list[int], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
