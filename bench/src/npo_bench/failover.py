"""``npo bench failover``: Kafka nodes killed with kill -9 under a steady load, and what it cost.

A three-node cluster of its own (scratch KRaft nodes on free ports) carries the whole nation
(every service and the simulated producers, ``npo_bench.nation``). Overview reads of one
patient and engagement updates of a dozen others go on at fixed rates (open loop), while the
run kills the leader of the access-events partition in use and starts it again, then a
follower, then two of the three nodes at once. Afterwards it counts, from the topics
themselves, the index and the audit log:

* ``acked_lost``: acknowledged updates or access events missing (on their topic, in the index,
  in the audit log): must be 0;
* ``duplicates``: event ids on a topic more than once, engagements indexed or access events
  logged more than once: must be 0;
* ``reads_unaudited``: answered reads with no access event in the audit log: must be 0;
* ``max_unavailable_s``: the longest stretch of refused reads while one node was down;
* ``reads_refused_two_down``: of the reads within the two-node outage, how many were refused
  with 503 and no data (all of them must be);
* ``consumer_lag``: what the consent, audit and index consumer groups had not committed in the
  end: 0 when they resumed by themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from npo_bench import harness
from npo_bench.nation import Nation, running_nation
from npo_deploy import kafka
from npo_deploy.kafka import LocalCluster
from npo_deploy.testing import scratch_dir, scratch_kafka_cluster
from npo_platform.categories import by_number
from npo_platform.events import EVENT_ID_HEADER, header
from npo_platform.identity import Role
from npo_platform.kafka_admin import GroupProgress
from npo_platform.settings import PlatformSettings, kafka_client_options
from npo_platform.topics import ENGAGEMENT_UPDATES
from npo_producer import EngagementProducer
from npo_simulator.notifications import engagement
from npo_simulator.organisations import Kind, Organisation
from npo_simulator.records import Record

NOTES = 8  # the category the load's engagements are of
READING = {"categories": ["notes", "care_contacts"]}
LOAD_PATIENTS = 12
PUBLISH_TIMEOUT_S = 10.0  # the load's bound on one publish: past it, sent again
GIVE_UP_S = 120.0  # an update still unconfirmed this long after it was due fails the run
READ_TIMEOUT_S = 20.0
# The query service's bound on the access event's acknowledgement: shorter than a fault's
# outage, so reads within it are refused rather than held (as in the broker-restart test).
QUERY_OPTIONS = {"audit_timeout_s": 2.0}


@dataclass(frozen=True)
class Plan:
    """The run's rhythm: load alone, then each fault (a node set killed, restarted after
    ``down_s``, then ``steady_s`` of load again)."""

    steady_s: float = 15.0
    down_s: float = 15.0
    reads_per_s: float = 4.0
    updates_per_s: float = 5.0
    faults: tuple[str, ...] = ("leader", "follower", "two")


QUICK = Plan(steady_s=6.0, down_s=8.0)


@dataclass
class Read:
    began: float
    ended: float
    status: int
    body: dict[str, Any]

    @property
    def has_data(self) -> bool:
        return "records" in self.body or "producers" in self.body


@dataclass
class Fault:
    kind: str
    nodes: list[int]
    killed_at: float = 0.0
    restarting_at: float = 0.0
    restarted_at: float = 0.0


@dataclass
class Load:
    """What the load sent and what it was told."""

    sent: int = 0
    confirmed: dict[str, str] = field(default_factory=dict)  # business object id → event id
    failures: int = 0  # publish attempts the SDK reported failed (then sent again)
    retried_to_success: int = 0
    reads: list[Read] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def answered(self) -> set[str]:
        return {r.body["accessEventId"] for r in self.reads if r.status == 200}


def load_producer(nation: Nation) -> Organisation:
    """A region publishing notes: the load's engagements are its."""
    regions = [o for o in nation.source.nation.organisations
               if o.kind is Kind.REGION and NOTES in o.publishes]
    return sorted(regions, key=lambda o: o.logical_address)[-1]


def load_patients(nation: Nation) -> list[str]:
    return [p.patient_id for p in nation.source.people if p.patient_id != nation.patient][:LOAD_PATIENTS]


async def notify(producer: EngagementProducer, org: Organisation, patient: str, n: int,
                 load: Load) -> None:
    """One new engagement (its own business object id), sent again until confirmed."""
    record = Record(f"load-{n}", patient, org, NOTES, org.care_unit(1),
                    datetime(2026, 11, 1, 8) + timedelta(seconds=n), 0)
    transaction = engagement(record, record.time)
    transaction.engagement.business_object_instance_identifier = record.record_id
    load.sent += 1
    failed = False
    async with asyncio.timeout(GIVE_UP_S):
        while True:
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                    [event_id] = await producer.publish([transaction])
                break
            except Exception:  # any failure: the producer sends it again
                load.failures += 1
                failed = True
                await asyncio.sleep(0.5)
    load.confirmed[record.record_id] = event_id
    load.retried_to_success += failed


async def read(http: httpx.AsyncClient, nation: Nation, load: Load) -> None:
    began = time.monotonic()
    try:
        answer = await http.post(f"{nation.query}/v1/overview",
                                 json=READING | {"patientId": nation.patient},
                                 headers=nation.headers(Role.CLINICIAN), timeout=READ_TIMEOUT_S)
    except httpx.TimeoutException as error:  # status 0: counted as neither answered nor refused
        load.reads.append(Read(began, time.monotonic(), 0, {"error": type(error).__name__}))
        return
    load.reads.append(Read(began, time.monotonic(), answer.status_code, answer.json()))


async def every(rate: float, until: asyncio.Event,
                start: Callable[[int], Coroutine[Any, Any, None]]) -> list[asyncio.Task[None]]:
    """Start ``start(n)`` at a fixed rate (open loop: a slow answer does not slow the load)."""
    tasks, n, began = [], 0, time.monotonic()
    while not until.is_set():
        tasks.append(asyncio.create_task(start(n)))
        n += 1
        await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
    return tasks


async def allow_reading(http: httpx.AsyncClient, nation: Nation) -> None:
    """The demo clinician's relation with and consent from the demo patient."""
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for path, body in (("relations", {"patient_id": nation.patient}),
                       ("consents", {"patient_id": nation.patient, "valid_to": later,
                                     "care_unit": nation.people[Role.CLINICIAN].care_unit})):
        answer = await http.post(f"{nation.consent}/v1/{path}", json=body,
                                 headers=nation.headers(Role.CLINICIAN))
        answer.raise_for_status()


async def access_replicas(bootstrap: str, topic: str, key: str) -> tuple[int, list[int]]:
    """The leader and the followers of the partition ``key``'s records go to."""
    admin = AIOKafkaAdminClient(**kafka_client_options(bootstrap))
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = sorted(described["partitions"], key=lambda p: p["partition"])
    chosen = partitions[(murmur2(key.encode()) & 0x7FFFFFFF) % len(partitions)]
    return chosen["leader"], [r for r in chosen["replicas"] if r != chosen["leader"]]


async def faults(nodes: LocalCluster, nation: Nation, plan: Plan, load: Load,
                 stop: asyncio.Event) -> None:
    """Each fault of the plan in turn, between stretches of load alone; then stops the load."""
    await asyncio.sleep(plan.steady_s)
    for kind in plan.faults:
        leader, followers = await access_replicas(nodes.bootstrap, nation.topics.access, nation.patient)
        victims = {"leader": [leader], "follower": followers[:1], "two": [leader, *followers[:1]]}[kind]
        fault = Fault(kind, victims)
        load.faults.append(fault)
        await asyncio.gather(*(asyncio.to_thread(kafka.kill, nodes.node(n)) for n in victims))
        fault.killed_at = time.monotonic()
        await asyncio.sleep(plan.down_s)
        fault.restarting_at = time.monotonic()
        await asyncio.to_thread(kafka.start_cluster, LocalCluster(tuple(nodes.node(n) for n in victims)))
        fault.restarted_at = time.monotonic()
        await asyncio.sleep(plan.steady_s)
    stop.set()


async def run_load(nodes: LocalCluster, nation: Nation, plan: Plan) -> Load:
    """The load and the faults; returns once every update was confirmed and every read answered."""
    org, patients = load_producer(nation), load_patients(nation)
    load, stop = Load(), asyncio.Event()
    topic = replace(ENGAGEMENT_UPDATES, name=nation.topics.updates)
    async with (httpx.AsyncClient(timeout=30) as http,
                EngagementProducer.connect(nodes.bootstrap, org.source_system, topic=topic) as producer):
        await allow_reading(http, nation)
        faulting = asyncio.create_task(faults(nodes, nation, plan, load, stop))
        notifying, reading = await asyncio.gather(
            every(plan.updates_per_s, stop,
                  lambda n: notify(producer, org, patients[n % len(patients)], n, load)),
            every(plan.reads_per_s, stop, lambda _: read(http, nation, load)))
        await faulting
        await asyncio.gather(*notifying, *reading)
    return load


async def indexed(http: httpx.AsyncClient, nation: Nation, org: Organisation,
                  patients: Iterable[str]) -> Counter[str]:
    """Business object ids of the load's engagements the index holds (all pages)."""
    found = Counter[str]()
    for patient in patients:
        body: dict[str, Any] = {"registeredResidentIdentification": patient,
                                "serviceDomain": by_number(NOTES).service_domain,
                                "logicalAddress": org.logical_address, "pageSize": 100}
        while body:
            answer = await http.post(f"{nation.index}/find-content", json=body,
                                     headers=nation.headers(nation.aggregator))
            answer.raise_for_status()
            page = answer.json()
            found.update(e["businessObjectInstanceIdentifier"] for e in page["engagements"]
                         if e["businessObjectInstanceIdentifier"].startswith("load-"))
            body = body | {"pageToken": page["nextPageToken"]} if page["nextPageToken"] else {}
    return found


async def access_log(http: httpx.AsyncClient, nation: Nation, patient: str,
                     outcomes: dict[str, str] | None = None) -> Counter[str]:
    """Event ids of the patient's access records in the audit log (all pages); ``outcomes``, when
    given, receives each record's outcome."""
    found = Counter[str]()
    body: dict[str, Any] = {"patient_id": patient, "limit": 1000}
    while True:
        answer = await http.post(f"{nation.audit}/audit/search", json=body,
                                 headers=nation.headers(Role.COMPLIANCE_OFFICER))
        answer.raise_for_status()
        page = answer.json()
        found.update(item["event_id"] for item in page["items"])
        if outcomes is not None:
            outcomes.update((item["event_id"], item["outcome"]) for item in page["items"])
        if not page["next_cursor"]:
            return found
        body["cursor"] = page["next_cursor"]


async def settled(fetch: Callable[[], Awaitable[Counter[str]]], wanted: set[str],
                  within: float = 90.0) -> Counter[str]:
    """``fetch()`` again until it holds every one of ``wanted``, or ``within`` s passed."""
    deadline = time.monotonic() + within
    found = await fetch()
    while not wanted <= set(found) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        found = await fetch()
    return found


async def event_ids_on(bootstrap: str, topic: str) -> Counter[str]:
    """How often each event id is on ``topic``, read from its start to its end now."""
    consumer = AIOKafkaConsumer(**kafka_client_options(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            partitions = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found = Counter[str]()
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                found.update(header(r.headers, EVENT_ID_HEADER) or "?" for r in records)
        return found
    finally:
        await consumer.stop()


async def _end_total(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(**kafka_client_options(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def consumer_lags(bootstrap: str, nation: Nation, within: float = 90.0) -> dict[str, int]:
    """Records each service's consumer group has not committed on its topic, once it caught up
    (or ``within`` s passed): the consent and audit consumers on the access events, the index's
    on the updates resumed by themselves after the faults when every lag is 0."""
    run = nation.topics.access.split(".")[2]  # test.nation.<run>.access (npo_bench.nation)
    groups = {f"consent-{run}": nation.topics.access, f"audit-{run}": nation.topics.access,
              f"idx-{run}": nation.topics.updates}
    lags = {}
    deadline = time.monotonic() + within
    for group, topic in groups.items():
        async with GroupProgress(bootstrap, group, topic) as progress:
            while (lag := await _end_total(bootstrap, topic) - await progress.committed()) > 0:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        lags[group.rsplit("-", 1)[0]] = lag
    return lags


def _repeated(counts: Counter[str]) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)


def _refused_stretches(reads: list[Read], since: float, until: float) -> list[float]:
    """Each run of refused reads begun within [since, until): from its first read's start to
    the start of the next answered read."""
    stretches, first = [], None
    for r in sorted(reads, key=lambda r: r.began):
        if r.status != 200 and first is None and since <= r.began < until:
            first = r.began
        elif r.status == 200 and first is not None:
            stretches.append(r.began - first)
            first = None
    if first is not None:
        stretches.append(until - first)
    return stretches


def _windows(faults: list[Fault], plan: Plan) -> dict[int, tuple[float, float]]:
    """Per fault (by id), when the reads it may have refused began: from its kill until the
    load after its restart ends, or until shortly before the next fault's kill (a read begun
    then waits for its access event past that kill: the next fault's to count)."""
    windows = {}
    for fault, after in zip(faults, [*faults[1:], None], strict=True):
        until = fault.restarted_at + plan.steady_s
        if after is not None:
            until = min(until, after.killed_at - QUERY_OPTIONS["audit_timeout_s"] - 1.0)
        windows[id(fault)] = (fault.killed_at, until)
    return windows


def _first_answer(reads: list[Read], since: float) -> float | None:
    """Seconds from ``since`` to the end of the first read answered after it."""
    answered = [r.ended for r in reads if r.status == 200 and r.ended > since]
    return round(min(answered) - since, 2) if answered else None


async def figures(nodes: LocalCluster, nation: Nation, plan: Plan, load: Load) -> dict[str, Any]:
    """What the run lost, duplicated and refused (waits for the index and the audit log to
    hold what was acknowledged, a bounded time)."""
    org, patients = load_producer(nation), load_patients(nation)
    answered = load.answered()
    async with httpx.AsyncClient(timeout=30) as http:
        in_index = await settled(lambda: indexed(http, nation, org, patients), set(load.confirmed))
        logged = await settled(lambda: access_log(http, nation, nation.patient), answered)
    lags = await consumer_lags(nodes.bootstrap, nation)
    on_updates = await event_ids_on(nodes.bootstrap, nation.topics.updates)
    on_access = await event_ids_on(nodes.bootstrap, nation.topics.access)
    lost = {
        "updates_not_on_topic": len(set(load.confirmed.values()) - set(on_updates)),
        "updates_not_indexed": len(set(load.confirmed) - set(in_index)),
        "access_events_not_on_topic": len(answered - set(on_access)),
        "access_events_not_logged": len(answered - set(logged)),
    }
    repeated = {"updates_on_topic": _repeated(on_updates), "access_events_on_topic": _repeated(on_access),
                "engagements_indexed": _repeated(in_index), "access_events_logged": _repeated(logged)}
    windows = _windows(load.faults, plan)
    one_down = [s for f in load.faults if len(f.nodes) == 1
                for s in _refused_stretches(load.reads, *windows[id(f)])]
    one_down_reads = [r for f in load.faults if len(f.nodes) == 1 for r in load.reads
                      if windows[id(f)][0] <= r.began < windows[id(f)][1]]
    two = [f for f in load.faults if len(f.nodes) == 2]
    two_down = [s for f in two for s in _refused_stretches(load.reads, *windows[id(f)])]
    within_two = [r for f in two for r in load.reads
                  if r.began >= f.killed_at and r.ended <= f.restarting_at]
    return {
        "acked_lost": sum(lost.values()),
        "duplicates": sum(repeated.values()),
        "reads_unaudited": len(answered - set(logged)),
        "max_unavailable_s": round(max(one_down, default=0.0), 2),
        "max_read_s_one_down": round(max((r.ended - r.began for r in one_down_reads), default=0.0), 2),
        "max_unavailable_two_down_s": round(max(two_down, default=0.0), 2),
        "reads_refused_two_down": sum(r.status == 503 and not r.has_data for r in within_two),
        "reads_two_down": len(within_two),
        "reads": len(load.reads),
        "reads_answered": len(answered),
        "reads_refused": sum(r.status == 503 for r in load.reads),
        "reads_other": sum(r.status not in (200, 503) for r in load.reads),
        "updates_confirmed": len(load.confirmed),
        "update_attempts_failed": load.failures,
        "consumer_lag": lags,
        "refusal_codes": dict(Counter(r.body.get("code", "?") for r in load.reads if r.status == 503)),
        "faults": [{"kind": f.kind, "nodes": f.nodes, "restart_s": round(f.restarted_at - f.restarting_at, 1),
                    "first_answer_after_kill_s": _first_answer(load.reads, f.killed_at),
                    "first_answer_after_restart_s": _first_answer(load.reads, f.restarted_at)}
                   for f in load.faults],
        "lost": lost,
        "repeated": repeated,
    }


def bench_failover(
    quick: bool = typer.Option(False, "--quick", help="shorter stretches (about 2 minutes)"),
    as_json: bool = typer.Option(False, "--json", help="also print the figures as one JSON line"),
    population: int = typer.Option(300, help="simulated people (the index's engagements)"),
) -> None:
    """Kill Kafka nodes (-9) of a three-node cluster under load: what was lost, duplicated,
    unaudited, and how long reads were refused."""
    plan = QUICK if quick else Plan()
    settings = PlatformSettings()
    with (scratch_kafka_cluster("npo-bench-failover-") as nodes,
          harness.database(settings.database_url, "failover") as url,
          scratch_dir("npo-bench-failover-state-") as state,
          running_nation(nodes.bootstrap, url, state, population=population,
                         query_options=QUERY_OPTIONS) as nation):
        load = asyncio.run(run_load(nodes, nation, plan))
        results = asyncio.run(figures(nodes, nation, plan, load))
    harness.report(results, as_json)
