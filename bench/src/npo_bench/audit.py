"""``npo bench audit``: ingest rate with hash chaining; search and extract latency over a big log.

Ingest is measured through the worker's write path (decode the protobuf record, build the
entry, evaluate the rules, link the hash chain, COPY the batch, sign a checkpoint, commit), in
batches of 1000 over three chains, without the Kafka fetch. The big log behind the latency
figures is bulk-loaded by SQL (``INSERT … SELECT generate_series``) into a separate chain whose
hashes are placeholders, not a real chain: it exists to give the indexes their real size; its
searches are added to the monthly rollup by one SQL aggregate, as migration 0003 backfills. The
operator's search statistics are timed over the last twelve months of that rollup.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import typer

from npo_audit.api_statistics import count_searches, month_range
from npo_audit.api_views import record_view
from npo_audit.config import AuditSettings
from npo_audit.domain import access_entry
from npo_audit.main import open_store
from npo_audit.store import SearchFilter
from npo_audit.store_pg_search import AuditQueries
from npo_bench import harness
from npo_platform.contracts import AccessEvent
from npo_platform.contracts.events_pb2 import ALLOWED, CONSENT, READ
from npo_platform.events import new_meta

SCHEMA = "audit_bench"
BULK_CHUNK = 1_000_000


@dataclass(frozen=True)
class Plan:
    stored: int
    ingest: int
    queries: int


QUICK = Plan(stored=1_000_000, ingest=60_000, queries=300)
FULL = Plan(stored=10_000_000, ingest=300_000, queries=1000)


def bench_audit(
    quick: Annotated[bool, typer.Option("--quick", help="a smaller run (1M stored events)")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="figures as JSON on the last line")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="keep the bench schema afterwards")] = False,
    writers: Annotated[int, typer.Option(help="writer processes, one chain (partition) each")] = 3,
) -> None:
    """Ingest rate with hash chaining; compliance-search and patient-extract latency p50/p99."""
    plan = QUICK if quick else FULL
    database = harness.database(AuditSettings().database_url, "audit")
    with database as url, tempfile.TemporaryDirectory(prefix="npo-audit-bench-") as home:
        settings = AuditSettings(DATABASE_URL=url, NPO_STATE_DIR=Path(home), db_schema=SCHEMA)
        figures = asyncio.run(_run(settings, plan, keep, writers))
    harness.report(figures, json_output)


async def _run(settings: AuditSettings, plan: Plan, keep: bool, writers: int) -> dict[str, Any]:
    await _drop_schema(settings.database_url)
    try:
        async with open_store(settings) as (pool, _):
            load_s = await _bulk_load(pool, plan.stored)
            loop = asyncio.get_running_loop()
            ingest_per_s = await loop.run_in_executor(None, _ingest, settings, plan.ingest, writers)
            stored = int(await pool.fetchval("SELECT count(*) FROM record"))
            figures = await _latencies(AuditQueries(pool), plan)
            figures |= await _statistics_latency(pool)
    finally:
        if not keep:
            await _drop_schema(settings.database_url)
    return {"ingest_per_s": ingest_per_s, **figures, "events_stored": stored, "ingest_writers": writers,
            "bulk_load_s": round(load_s, 1), "bulk_load_method": "INSERT ... SELECT generate_series"}


async def _drop_schema(url: str, schema: str = SCHEMA) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


_BULK_INSERT = """
INSERT INTO record (chain, seq, kind, event_id, event_time, recorded_at, patient_id, user_hsa_id,
    care_unit, care_giver, activity, basis, outcome, purpose, categories, payload, subject,
    prev_hash, hash)
SELECT 'bulk-unchained', n, 'access', 'bulk-' || n,
    $3::timestamptz + (n::float8 / $4::bigint) * interval '360 days',
    $3::timestamptz + (n::float8 / $4::bigint) * interval '360 days',
    lpad(((n * 7919) % ($4::bigint / 10))::text, 12, '0'),
    'SE2321000016-U' || lpad(((n * 31) % 20000)::text, 5, '0'),
    'SE2321000016-E' || lpad(((n * 17) % 2000)::text, 4, '0'),
    'SE2321000016-G' || lpad(((n * 13) % 200)::text, 3, '0'),
    1, CASE WHEN n % 97 = 0 THEN 4 ELSE 3 END,
    CASE WHEN n % 53 = 0 THEN 3 WHEN n % 31 = 0 THEN 2 ELSE 1 END,
    'care', ARRAY['dia', 'caa-gmh'], ''::bytea, '',
    sha256(int8send(n - 1)), sha256(int8send(n))
FROM generate_series($1::bigint, $2::bigint) AS n
"""


async def _bulk_load(pool: asyncpg.Pool, total: int) -> float:
    began = time.perf_counter()
    start = _bulk_start()
    for month in range(13):
        await pool.execute("SELECT ensure_month_partition($1)", start + timedelta(days=30 * month))
    for first in range(1, total + 1, BULK_CHUNK):
        last = min(first + BULK_CHUNK - 1, total)
        await pool.execute(_BULK_INSERT, first, last, start, total, timeout=3600)
        typer.echo(f"bulk-loaded {last:,} / {total:,} ({time.perf_counter() - began:.0f} s)", err=True)
    await pool.execute(_BULK_SEARCH_COUNTS)
    await pool.execute("ANALYZE record")
    await pool.execute("ANALYZE search_counts")
    return time.perf_counter() - began


# The bulk-loaded records bypass the writer: their searches are added as migration 0003 does.
_BULK_SEARCH_COUNTS = """
INSERT INTO search_counts AS s (month, care_giver, care_unit, searches, answered)
SELECT date_trunc('month', event_time AT TIME ZONE 'UTC')::date, care_giver, care_unit,
       count(*), count(*) FILTER (WHERE outcome IN (1, 2))
FROM record WHERE chain = 'bulk-unchained' AND kind = 'access' AND activity IN (1, 7)
GROUP BY 1, 2, 3
ON CONFLICT (month, care_giver, care_unit) DO UPDATE
    SET searches = s.searches + excluded.searches, answered = s.answered + excluded.answered
"""


async def _statistics_latency(pool: asyncpg.Pool, rounds: int = 40) -> dict[str, float]:
    """The operator's search statistics over the last twelve months, by care giver and by unit."""
    span = month_range(None, None, datetime.now(UTC))
    samples: list[float] = []
    for i in range(rounds):
        began = time.perf_counter()
        await count_searches(AuditQueries(pool), span, "care_unit" if i % 2 else "care_giver")
        samples.append((time.perf_counter() - began) * 1000)
    rows = int(await pool.fetchval("SELECT count(*) FROM search_counts"))
    return {"statistics_12m_p50_ms": _quantile(samples, 0.50),
            "statistics_12m_p99_ms": _quantile(samples, 0.99), "search_count_rows": rows}


def _bulk_start() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=365)


def _office_hours() -> datetime:
    """09:00 UTC (10 or 11 in Sweden) on the last weekday: the normal time of a normal access."""
    day = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def _events(count: int, seed: int = 7) -> tuple[list[bytes], list[tuple[str, str]]]:
    """Encoded access events, and the (patient, unit) relations behind 99 % of them."""
    rng = random.Random(seed)  # noqa: S311 (synthetic load, not secrets)
    at = _office_hours()
    encoded, related = [], []
    for i in range(count):
        patient, unit = f"{rng.randrange(10**11, 10**12):012d}", f"SE2321000016-E{rng.randrange(50):04d}"
        event = AccessEvent(meta=new_meta("npo-query", at=at + timedelta(seconds=i % 3600)),
                            patient_id=patient, activity=READ,
                            categories=["dia", "voo"], basis=CONSENT, outcome=ALLOWED)
        actor = event.actor
        actor.user_hsa_id = f"SE2321000016-U{rng.randrange(20000):05d}"
        actor.name, actor.purpose = "Bench Reader", "care"
        actor.care_unit_hsa_id, actor.care_giver_hsa_id = unit, "SE2321000016-G001"
        encoded.append(event.SerializeToString())
        if i % 100:
            related.append((patient, unit))
    return encoded, related


def _ingest(settings: AuditSettings, count: int, writers: int) -> int:
    """Events per second written by ``writers`` processes at once, one chain (partition) each,
    as worker replicas would; each process decodes, evaluates, links, COPYs and signs."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.SimpleQueue()
    share = count // writers
    processes = [context.Process(target=_writer_process, args=(settings, chain, share, start, results))
                 for chain in range(writers)]
    for process in processes:
        process.start()
    while not all(_ready(settings, chain) for chain in range(writers)):
        if not all(process.is_alive() for process in processes):
            raise RuntimeError("a bench writer process failed")
        time.sleep(0.2)
    start.set()
    spans: list[tuple[float, float]] = [results.get() for _ in processes]
    for process in processes:
        process.join()
    began, ended = min(s for s, _ in spans), max(e for _, e in spans)
    return round(share * writers / (ended - began))


def _ready_file(settings: AuditSettings, chain: int) -> Path:
    return settings.state_dir / f"writer-{chain}.ready"


def _ready(settings: AuditSettings, chain: int) -> bool:
    return _ready_file(settings, chain).exists()


def _writer_process(settings: AuditSettings, chain: int, count: int, start: Any, results: Any) -> None:
    results.put(asyncio.run(_write_chain(settings, chain, count, start)))


async def _write_chain(settings: AuditSettings, chain: int, count: int, start: Any) -> tuple[float, float]:
    encoded, related = _events(count, seed=chain)
    async with open_store(settings) as (pool, store):
        await pool.copy_records_to_table(
            "relation", columns=("record_id", "patient_id", "care_unit", "care_giver"),
            records=[(f"rel-{chain}-{i}", p, u, "SE2321000016-G001") for i, (p, u) in enumerate(related)],
        )
        _ready_file(settings, chain).touch()
        await asyncio.get_running_loop().run_in_executor(None, start.wait)
        began = time.time()
        for first in range(0, count, 1000):
            raws = encoded[first:first + 1000]
            entries = [access_entry(AccessEvent.FromString(r), r) for r in raws]
            await store.append(f"access-p{chain}", entries)
        return began, time.time()


async def _timed(samples: list[float], call: Any) -> None:
    began = time.perf_counter()
    records = await call
    _ = [record_view(r) for r in records]
    samples.append((time.perf_counter() - began) * 1000)


async def _latencies(queries: AuditQueries, plan: Plan) -> dict[str, float]:
    rng = random.Random(11)  # noqa: S311
    patients = plan.stored // 10
    end = _bulk_start() + timedelta(days=360)
    search: list[float] = []
    extract: list[float] = []
    for i in range(plan.queries):
        day = end - timedelta(days=rng.randrange(1, 350))
        filters = [
            SearchFilter(patient_id=f"{rng.randrange(patients):012d}"),
            SearchFilter(user_hsa_id=f"SE2321000016-U{rng.randrange(20000):05d}",
                         time_from=day, time_to=day + timedelta(days=7)),
            SearchFilter(care_unit=f"SE2321000016-E{rng.randrange(2000):04d}", time_from=day),
            SearchFilter(care_giver=f"SE2321000016-G{rng.randrange(200):03d}"),
            SearchFilter(outcome=3, time_from=day, time_to=day + timedelta(days=1)),
            SearchFilter(basis=4, time_to=day),
        ]
        await _timed(search, queries.search(filters[i % len(filters)], 100))
        patient = f"{rng.randrange(patients):012d}"
        await _timed(extract, queries.extract(patient, 10_000, None))
    return {
        "search_p50_ms": _quantile(search, 0.50), "search_p99_ms": _quantile(search, 0.99),
        "extract_p50_ms": _quantile(extract, 0.50), "extract_p99_ms": _quantile(extract, 0.99),
    }


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)
