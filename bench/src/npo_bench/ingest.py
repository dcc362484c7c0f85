"""``npo bench ingest``: ingest rate vs the raw broker rate, freshness, FindContent latency.

Runs against the local stack, starting it (and stopping it afterwards) when nothing answers.
Each run uses its own topic, consumer group and database schema, dropped at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import asyncpg
import httpx
import typer
import uvloop
from aiokafka import AIOKafkaConsumer
from rich.console import Console

from npo_bench import cpu
from npo_index.config import IndexSettings
from npo_index.domain import Identity
from npo_index.main import Worker, create_app, ensure_index_topics, open_worker
from npo_index.store import FindQuery
from npo_platform.contracts import EngagementUpdate
from npo_platform.contracts.events_pb2 import Engagement, EngagementTransaction
from npo_platform.events import new_meta
from npo_platform.identifiers import make_personnummer
from npo_platform.identity import Principal, Role, TokenVerifier, ensure_local_keypair, issue_token
from npo_platform.kafka import EventPublisher
from npo_platform.kafka_admin import (
    GroupProgress,
    TopicProvisioningError,
    delete_topics,
    with_dead_letters,
)
from npo_platform.service import tune_collector
from npo_platform.settings import kafka_client_options
from npo_platform.topics import ENGAGEMENT_UPDATES
from npo_producer import patient_key

console = Console(stderr=True)
PRODUCER = "SE2321000016-B001"
DOMAIN = "riv:clinicalprocess:healthcond:description"
CATEGORIZATIONS = ("dia", "upp", "voo", "fun-fun", "pad-pad")
KEYS_PER_PATIENT = 10
_RNG = random.Random(2026)  # noqa: S311 - benchmark sampling, not security


@dataclass(frozen=True)
class Size:
    updates: int
    patients: int
    freshness_seconds: float
    rows: int
    queries: int


FULL = Size(1_000_000, 100_000, 20.0, 10_000_000, 5000)
QUICK = Size(400_000, 40_000, 8.0, 1_000_000, 2000)
FRESHNESS_RATE = 5000  # updates/s


def ingest(
    quick: Annotated[bool, typer.Option("--quick", help="a smaller run of a minute or two")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="figures as one JSON object, last line")] = False,
    workers: Annotated[int, typer.Option(help="ingest processes in one consumer group")] = 1,
) -> None:
    """Ingest 1,000,000 updates over 100,000 patients; freshness at 5,000/s; FindContent at ≥10M rows."""
    settings = IndexSettings()
    started = _ensure_stack(settings)
    try:
        figures = uvloop.run(_bench(settings, QUICK if quick else FULL, workers))  # as the services
    finally:
        if started:
            from npo_deploy import infra

            infra.down(settings)
    for name, value in figures.items():
        console.print(f"{name:>20}: {value}")
    console.print("(2 shared cores: figures are disturbed by whatever else runs on the machine)")
    if as_json:
        print(json.dumps(figures))


def _ensure_stack(settings: IndexSettings) -> bool:
    from npo_deploy import infra

    if all(c.reachable for c in infra.status(settings)):
        return False
    ensure_local_keypair(settings.keys_dir)
    return any(infra.up(settings, console).values())


def patient(n: int) -> str:
    return make_personnummer(date(1930, 1, 1) + timedelta(days=n // 900), n % 900)


def _update(p: str, at: datetime, content: str) -> EngagementUpdate:
    transactions = [
        EngagementTransaction(engagement=Engagement(
            registered_resident_identification=p, service_domain=DOMAIN,
            categorization=CATEGORIZATIONS[k % 5], logical_address=PRODUCER,
            business_object_instance_identifier=f"doc-{k // 5}", most_recent_content=content,
            source_system=PRODUCER, data_controller="SE2321000016-0001",
        ))
        for k in range(KEYS_PER_PATIENT)
    ]
    return EngagementUpdate(meta=new_meta(PRODUCER, at=at), producer=PRODUCER, transactions=transactions)


async def _bench(base: IndexSettings, size: Size, workers: int = 1) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    settings = base.model_copy(update={
        "updates_topic": f"{ENGAGEMENT_UPDATES.name}.bench-{run}",
        "changes_topic": f"{base.changes_topic}.bench-{run}",
        "db_schema": f"npo_index_bench_{run}", "consumer_group": f"npo-index-bench-{run}",
    })
    topics = with_dead_letters([settings.updates, settings.changes])
    # One partition per group member, as production sizes the topic for its workers.
    await ensure_index_topics(settings, partitions=settings.consumers * workers)
    try:
        return await _run(settings, size, workers)
    finally:  # a run's records are ~1 GB: not left on the broker
        try:
            await delete_topics(settings.kafka_bootstrap_servers, topics)
        except TopicProvisioningError as error:  # the figures still count; say what is left
            console.print(f"[yellow]warning: {error}[/yellow]")


async def _run(settings: IndexSettings, size: Size, workers: int) -> dict[str, Any]:
    """Produce, raw-consume, then ingest with ``workers`` processes: every figure of the run."""
    messages = size.updates // KEYS_PER_PATIENT
    console.print(f"producing {size.updates} updates over {size.patients} patients…")
    await _produce(settings, [_update(patient(n % size.patients), datetime.now(UTC), "20260101120000")
                              for n in range(messages)])
    raw = await _raw_consume(settings, size.updates)
    await _checkpoint(settings)
    # Every process has the same number of group members, so the partitions spread evenly.
    children = [_spawn_worker(settings) for _ in range(workers - 1)]
    async with open_worker(settings) as worker:
        tune_collector()  # as run_worker does in npo-index and npo-index-worker
        try:
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop))
            async with GroupProgress(settings.kafka_bootstrap_servers, settings.consumer_group,
                                     settings.updates_topic) as progress:
                await progress.wait_stable(members=settings.consumers * workers)
                database, broker = (cpu.listener(settings.database_url),
                                    cpu.listener(settings.kafka_bootstrap_servers))
                meter = cpu.Meter({"index": lambda: [os.getpid(), *(c.pid for c in children)],
                                   "postgres": lambda: cpu.tree(database), "broker": lambda: [broker]})
                settled = await progress.committed()
                images = await _full_page_images(worker)
                rate = await _ingest_rate(worker, progress, settled, messages, size.updates)
                images = await _full_page_images(worker) - images
            metered = messages - settled
            spent = meter.per_unit(metered * KEYS_PER_PATIENT, unit=1e-6)
            fresh = await _freshness(settings, worker, size)
            _stop_workers(children)
            stop.set()
            await task
            find = await _find_content(settings, worker, size)
        finally:
            _stop_workers(children)
            async with worker.store.pool.acquire() as conn:
                await conn.execute(f'DROP SCHEMA "{settings.db_schema}" CASCADE')
    return {"updates_per_s": round(rate), "raw_consume_per_s": round(raw),
            "ingest_to_raw_ratio": round(rate / raw, 3), "workers": workers,
            "wal_full_page_images_during_ingest": images, **fresh, **find,
            **{f"cpu_us_per_update_{part}": round(value, 1) for part, value in spent.items()}}


async def _checkpoint(settings: IndexSettings) -> None:
    """Start from a checkpoint, as database benchmarks do: otherwise one owed to the WAL of
    earlier runs (a full run writes 5.1-7.4 GiB, mostly seeding the 10 M rows) may begin inside
    the ingest, and every index page touched after it is written to the WAL whole once more
    (24,000-27,000 full-page images in a quick run that had one; 24-94 in the ingests of full
    runs that started from one). Needs the ``pg_checkpoint`` role, which the local stack
    grants; elsewhere the run goes on without and says so."""
    connection = await asyncpg.connect(settings.database_url)
    try:
        await connection.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        console.print("no CHECKPOINT before the run (needs pg_checkpoint): a checkpoint owed "
                      "to earlier writes may fall in it (see wal_full_page_images_during_ingest)")
    finally:
        await connection.close()


async def _full_page_images(worker: Worker) -> int:
    """Whole pages written to the WAL so far (pg_stat_wal): a checkpoint's cost in the figures."""
    async with worker.store.pool.acquire() as connection:
        images: int = await connection.fetchval("SELECT wal_fpi FROM pg_stat_wal")
    return images


def _spawn_worker(settings: IndexSettings) -> subprocess.Popen[bytes]:
    """One more ``npo_index`` worker process on this run's topic, schema and group."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "DATABASE_URL": settings.database_url, "INDEX_UPDATES_TOPIC": settings.updates_topic,
           "INDEX_CHANGES_TOPIC": settings.changes_topic, "INDEX_DB_SCHEMA": settings.db_schema,
           "INDEX_CONSUMER_GROUP": settings.consumer_group, "INDEX_CONSUMERS": str(settings.consumers),
           "NPO_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "npo_index"], env=env)


def _stop_workers(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        child.wait(timeout=30)


async def _produce(settings: IndexSettings, updates: list[EngagementUpdate]) -> None:
    publisher = EventPublisher(settings.kafka_bootstrap_servers, client_id="bench", linger_ms=20)
    await publisher.start()
    try:
        acks = [await publisher.send(settings.updates, patient_key(u), u) for u in updates]
        await asyncio.gather(*acks)
    finally:
        await publisher.stop()


async def _raw_consume(settings: IndexSettings, updates: int) -> float:
    """The broker's rate for this topic: fetch and decode every record, no database."""
    consumer = AIOKafkaConsumer(settings.updates_topic,
                                **kafka_client_options(settings.kafka_bootstrap_servers),
                                auto_offset_reset="earliest", max_poll_records=5000)
    await consumer.start()
    counted, began = 0, 0.0
    try:
        while counted < updates:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                began = began or time.perf_counter()
                counted += sum(len(EngagementUpdate.FromString(r.value).transactions) for r in records)
        return counted / (time.perf_counter() - began)
    finally:
        await consumer.stop()


async def _ingest_rate(
    worker: Worker, progress: GroupProgress, settled: int, messages: int, updates: int
) -> float:
    """Sustained rate from topic to committed rows while every process ingests: from 10 % to
    90 % of the messages still to do once the group settled, counted by the group's committed
    offsets (a batch's offsets are committed after its database transaction). Commits arrive
    in steps of a whole batch per group member, so counting from the first commit would credit
    batches begun before; the middle of the run has neither the start nor the tail of a lone
    last partition. ``settled``: the messages committed when the group settled."""
    low, high = settled + (messages - settled) // 10, settled + (messages - settled) * 9 // 10
    first: tuple[float, int] | None = None
    while (done := await progress.committed()) < messages:
        now = time.perf_counter()
        if first is None and done >= low:
            first = (now, done)
        if first is not None and done >= high:
            break
        await asyncio.sleep(0.05)
    if first is None or done == first[1]:
        raise RuntimeError("too few updates to measure a sustained rate")
    rate = (done - first[1]) * KEYS_PER_PATIENT / (time.perf_counter() - first[0])
    while await progress.committed() < messages:  # noqa: ASYNC110 - polls the broker
        await asyncio.sleep(0.05)
    console.print(f"ingested {updates} updates; waiting for the change stream to catch up…")
    while await worker.store.pending_outbox(1):  # noqa: ASYNC110 - polls the database
        await asyncio.sleep(0.1)
    return rate


def _client(settings: IndexSettings, worker: Worker) -> tuple[httpx.AsyncClient, dict[str, str]]:
    private, public = ensure_local_keypair(settings.keys_dir)
    app = create_app(settings, store=worker.store, publisher=worker.publisher,
                     token_verifier=TokenVerifier(public.read_bytes()))
    aggregator = next(iter(settings.find_content_systems))  # FindContent answers only it
    principal = Principal(sub=aggregator, name="bench", roles=frozenset({Role.SYSTEM}))
    token = issue_token(private.read_bytes(), principal, timedelta(hours=1))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://npo-index.bench")
    return client, {"Authorization": f"Bearer {token}"}


async def _freshness(settings: IndexSettings, worker: Worker, size: Size) -> dict[str, float]:
    """Steady 5,000 updates/s; one message per 100 ms tick is a probe: produced → found.

    One task polls the pending probes with the FindContent query (store.find, the SQL behind the
    HTTP route; HTTP cost is measured separately below) every 10 ms: polling through HTTP from
    many tasks would steal the event loop the consumer runs on and measure itself.
    """
    publisher = EventPublisher(settings.kafka_bootstrap_servers, client_id="bench-fresh")
    await publisher.start()
    pending: dict[str, tuple[str, float]] = {}
    latencies: list[float] = []
    done = asyncio.Event()
    poller = asyncio.create_task(_poll(worker, pending, latencies, done))
    tick, per_tick = 0.1, FRESHNESS_RATE // 10 // KEYS_PER_PATIENT
    try:
        began = time.perf_counter()
        for n in range(int(size.freshness_seconds / tick)):
            await asyncio.sleep(max(0.0, began + n * tick - time.perf_counter()))
            now = datetime.now(UTC)
            content = (now + timedelta(seconds=n)).strftime("%Y%m%d%H%M%S")
            batch = [_update(patient(_RNG.randrange(size.patients)), now, content) for _ in range(per_tick)]
            pending[patient_key(batch[0])] = (content, time.perf_counter())
            for u in batch:
                await publisher.send(settings.updates, patient_key(u), u)
        done.set()
        await poller
    finally:
        await publisher.stop()
    return {"freshness_p50_ms": _ms(statistics.median(latencies)), "freshness_p99_ms": _ms(_p99(latencies))}


async def _poll(
    worker: Worker, pending: dict[str, tuple[str, float]], out: list[float], done: asyncio.Event
) -> None:
    while pending or not done.is_set():
        for p, (content, sent) in list(pending.items()):
            query = FindQuery(p, (DOMAIN,), most_recent_content_from=content, limit=1)
            if await worker.store.find(query):
                out.append(time.perf_counter() - sent)
                del pending[p]
        await asyncio.sleep(0.01)


async def _find_content(settings: IndexSettings, worker: Worker, size: Size) -> dict[str, float]:
    rows = await _seed(worker, size)
    client, headers = _client(settings, worker)
    latencies = []
    try:
        for _ in range(size.queries):
            body = {"registeredResidentIdentification": patient(_RNG.randrange(size.patients)),
                    "serviceDomain": DOMAIN}
            began = time.perf_counter()
            response = await client.post("/find-content", json=body, headers=headers)
            latencies.append(time.perf_counter() - began)
            assert response.status_code == 200
    finally:
        await client.aclose()
    return {"findcontent_p50_ms": _ms(statistics.median(latencies)),
            "findcontent_p99_ms": _ms(_p99(latencies)), "rows": rows}


async def _seed(worker: Worker, size: Size) -> int:
    """Top the index up to ``size.rows`` rows with COPY (other patients; FindContent reads them)."""
    async with worker.store.pool.acquire() as conn:
        have: int = await conn.fetchval("SELECT count(*) FROM engagements")
        missing = size.rows - have
        if missing > 0:
            console.print(f"seeding {missing} rows with COPY…")
            await conn.copy_records_to_table(
                "engagements", records=_seed_rows(missing, size.patients),
                columns=_SEED_COLUMNS,
            )
            # As after any bulk load: otherwise autovacuum starts on the 10M fresh rows while
            # FindContent is measured, and its p99 measures the vacuum.
            await conn.execute("VACUUM (ANALYZE) engagements")
        total: int = await conn.fetchval("SELECT count(*) FROM engagements")
        return total


_SEED_COLUMNS = (
    "key", "patient", "service_domain", "categorization", "logical_address",
    "business_object_instance_identifier", "clinical_process_interest_id", "source_system",
    "data_controller", "owner", "most_recent_content", "deleted", "version_time",
    "version_content", "version_event", "creation_time", "update_time",
)


def _seed_rows(count: int, first_patient: int) -> Iterator[tuple[Any, ...]]:
    at = datetime(2025, 1, 1, tzinfo=UTC)
    for n in range(count):
        seeded = Identity(patient(first_patient + n // 20), DOMAIN, CATEGORIZATIONS[n % 5], PRODUCER,
                          f"seed-{n % 20}", "NA", PRODUCER, "SE2321000016-0001", "NA")
        yield (seeded.key, *seeded.parts(), "20250101000000", False, at, "20250101000000",
               "seed", at, at)


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
