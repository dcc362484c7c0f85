"""Issue 8: a broker restart in the middle of a steady load loses no notification and no access event.

The nation runs on a broker of its own (a scratch KRaft broker; the session's database), so
killing it disturbs no other test. For a bounded time a producer publishes engagement
notifications at a fixed rate through the producer SDK and the demo clinician reads the
overview at a fixed rate. In the middle the broker is killed with SIGKILL (kill -9: no clean
shutdown, its log is recovered on start), left down for a few seconds and started again on the
same data directory and ports. Then:

* every notification the SDK confirmed (first time, or after it reported a failure and the
  producer sent it again) is in the index exactly once (FindContent);
* every overview answered 200 has exactly one access event in the audit log (by event id);
* reads while the broker was down were refused with 503 and carried no data.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from national import Nation, running_nation

from npo_deploy import kafka
from npo_deploy.kafka import LocalKafka
from npo_deploy.testing import isolated_kafka, scratch_dir
from npo_platform.categories import by_number
from npo_platform.identity import Role
from npo_platform.topics import ENGAGEMENT_UPDATES
from npo_producer import EngagementProducer
from npo_simulator.notifications import engagement
from npo_simulator.organisations import Kind, Organisation
from npo_simulator.records import Record

pytestmark = pytest.mark.integration

NOTIFICATIONS_PER_S = 5.0
READS_PER_S = 2.0
KILL_AFTER_S = 8.0  # steady load before the broker dies
DOWN_S = 6.0  # how long it stays down before it is started again
LOAD_AFTER_RESTART_S = 8.0  # steady load once it answers again
PUBLISH_TIMEOUT_S = 10.0  # the producer's own bound: past it, a notification counts as failed
GIVE_UP_S = 90.0  # a notification still unconfirmed this long after it was due fails the test
READ_TIMEOUT_S = 20.0
READING = {"categories": ["notes", "care_contacts"]}  # two of the demo patient's categories
NOTES = 8
LOAD_PATIENTS = 12


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalKafka]:
    with scratch_dir("npo-kafka-restart-") as home:
        own = isolated_kafka(home)
        kafka.start(own)
        try:
            yield own
        finally:
            kafka.stop(own)


@pytest.fixture(scope="module")
def nation(broker: LocalKafka, database_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    with running_nation(broker.bootstrap, database_url, tmp_path_factory.mktemp("nation"),
                        population=300, query_options={"audit_timeout_s": 2.0}) as running:
        yield running


@dataclass
class Read:
    began: float
    ended: float
    status: int
    body: dict[str, Any]


@dataclass
class Load:
    """What the load sent and what it was told."""

    sent: int = 0
    confirmed: set[str] = field(default_factory=set)  # business object ids the SDK confirmed
    failures: int = 0  # publish attempts the SDK reported failed (then sent again)
    retried_to_success: int = 0
    reads: list[Read] = field(default_factory=list)
    killed_at: float = 0.0
    restarting_at: float = 0.0
    restarted_at: float = 0.0

    def reads_with(self, status: int) -> list[Read]:
        return [r for r in self.reads if r.status == status]


def load_producer(nation: Nation) -> Organisation:
    regions = [o for o in nation.source.nation.organisations
               if o.kind is Kind.REGION and NOTES in o.publishes]
    return sorted(regions, key=lambda o: o.logical_address)[-1]


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
                    await producer.publish([transaction])
                break
            except Exception:
                load.failures += 1
                failed = True
                await asyncio.sleep(0.5)
    load.confirmed.add(record.record_id)
    load.retried_to_success += failed


async def read(http: httpx.AsyncClient, nation: Nation, load: Load) -> None:
    began = time.monotonic()
    try:
        answer = await http.post(f"{nation.query}/v1/overview",
                                 json=READING | {"patientId": nation.patient},
                                 headers=nation.headers(Role.CLINICIAN), timeout=READ_TIMEOUT_S)
    except httpx.TimeoutException as error:  # reported as status 0, the test then fails
        load.reads.append(Read(began, time.monotonic(), 0, {"error": type(error).__name__}))
        return
    load.reads.append(Read(began, time.monotonic(), answer.status_code, answer.json()))


async def every(rate: float, until: asyncio.Event, start: Any) -> list[asyncio.Task[None]]:
    """Start ``start(n)`` at a fixed rate (open loop: a slow answer does not slow the load)."""
    tasks, n, began = [], 0, time.monotonic()
    while not until.is_set():
        tasks.append(asyncio.create_task(start(n)))
        n += 1
        await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
    return tasks


async def restart_in_the_middle(broker: LocalKafka, load: Load, stop: asyncio.Event) -> None:
    await asyncio.sleep(KILL_AFTER_S)
    await asyncio.to_thread(kafka.kill, broker)
    load.killed_at = time.monotonic()
    await asyncio.sleep(DOWN_S)
    load.restarting_at = time.monotonic()
    await asyncio.to_thread(kafka.start, broker)  # same data dir and ports
    load.restarted_at = time.monotonic()
    await asyncio.sleep(LOAD_AFTER_RESTART_S)
    stop.set()


async def indexed(http: httpx.AsyncClient, nation: Nation, org: Organisation,
                  patients: list[str]) -> Counter[str]:
    """Business object ids of the load's engagements the index holds (all pages)."""
    found = Counter[str]()
    for patient in patients:
        body: dict[str, Any] = {"registeredResidentIdentification": patient,
                                "serviceDomain": by_number(NOTES).service_domain,
                                "logicalAddress": org.logical_address, "pageSize": 100}
        while True:
            answer = await http.post(f"{nation.index}/find-content", json=body,
                                     headers=nation.headers(Role.OPERATOR))
            assert answer.status_code == 200, answer.text
            page = answer.json()
            found.update(e["businessObjectInstanceIdentifier"] for e in page["engagements"]
                         if e["businessObjectInstanceIdentifier"].startswith("load-"))
            if not page["nextPageToken"]:
                break
            body["pageToken"] = page["nextPageToken"]
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
        assert answer.status_code == 200, answer.text
        page = answer.json()
        found.update(item["event_id"] for item in page["items"])
        if outcomes is not None:
            outcomes.update((item["event_id"], item["outcome"]) for item in page["items"])
        if not page["next_cursor"]:
            return found
        body["cursor"] = page["next_cursor"]


async def settled(fetch: Any, done: Any, within: float = 60.0) -> Any:
    async with asyncio.timeout(within):
        while not done(found := await fetch()):  # noqa: ASYNC110 - polling other services
            await asyncio.sleep(0.5)
    return found


async def test_a_broker_killed_under_load_loses_no_notification_and_no_access_event(
    nation: Nation, broker: LocalKafka, capsys: pytest.CaptureFixture[str]
) -> None:
    org = load_producer(nation)
    patients = [p.patient_id for p in nation.source.people if p.patient_id != nation.patient]
    patients = patients[:LOAD_PATIENTS]
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    load, stop = Load(), asyncio.Event()
    topic = replace(ENGAGEMENT_UPDATES, name=nation.topics.updates)
    async with httpx.AsyncClient(timeout=30) as http:
        for path, body in (("relations", {"patient_id": nation.patient}),
                           ("consents", {"patient_id": nation.patient, "valid_to": later,
                                         "care_unit": nation.people[Role.CLINICIAN].care_unit})):
            answer = await http.post(f"{nation.consent}/v1/{path}", json=body,
                                     headers=nation.headers(Role.CLINICIAN))
            assert answer.status_code == 201, answer.text
        before = await access_log(http, nation, nation.patient)
        began = time.monotonic()
        async with EngagementProducer.connect(broker.bootstrap, org.source_system,
                                              topic=topic) as producer:
            restart = asyncio.create_task(restart_in_the_middle(broker, load, stop))
            notifying, reading = await asyncio.gather(
                every(NOTIFICATIONS_PER_S, stop,
                      lambda n: notify(producer, org, patients[n % len(patients)], n, load)),
                every(READS_PER_S, stop, lambda _: read(http, nation, load)))
            await restart
            load_s = time.monotonic() - began
            await asyncio.gather(*notifying, *reading)  # every one confirmed or failed the test
        drained_s = time.monotonic() - began
        confirmed = Counter(load.confirmed)
        in_index = await settled(lambda: indexed(http, nation, org, patients),
                                 lambda found: set(found) >= set(confirmed))
        answered = {r.body["accessEventId"] for r in load.reads_with(200)}
        outcomes: dict[str, str] = {}
        logged = await settled(lambda: access_log(http, nation, nation.patient, outcomes),
                               lambda found: set(found) >= answered)

    refused = load.reads_with(503)
    served_again = min(r.ended for r in load.reads_with(200) if r.ended > load.restarted_at)
    # Reads that began after the kill and ended before a new broker process even existed.
    during = [r for r in load.reads if r.began >= load.killed_at and r.ended <= load.restarting_at]
    late = set(logged) - set(before) - answered  # events of refused reads written after all
    corrections = {e for e in late if outcomes[e] == "not_delivered"}  # "the reader got no data"
    with capsys.disabled():
        print(f"\nbroker restart under load (kill -9 at {load.killed_at - began:.1f} s, "
              f"down {load.restarting_at - load.killed_at:.1f} s, answering again after "
              f"{load.restarted_at - load.killed_at:.1f} s; load {load_s:.1f} s, "
              f"drained {drained_s:.1f} s)\n"
              f"  the broker's own start after kill -9: {load.restarted_at - load.restarting_at:.1f} s; "
              f"from the broker answering to the first answered read: "
              f"{served_again - load.restarted_at:.1f} s\n"
              f"  notifications: sent {load.sent}, confirmed {len(load.confirmed)}, "
              f"failed attempts {load.failures}, retried to success {load.retried_to_success}, "
              f"in the index {sum(in_index.values())} ({len(in_index)} distinct)\n"
              f"  reads: {len(load.reads)}, ok {len(load.reads_with(200))}, "
              f"503 {len(refused)} (while down: {len(during)}), "
              f"other {len(load.reads) - len(load.reads_with(200)) - len(refused)}; "
              f"refusal codes {dict(Counter(r.body['code'] for r in refused))}\n"
              f"  access events of answered reads: {sum(logged[e] for e in answered)}; "
              f"of refused reads, written once the broker was back: {len(late - corrections)} "
              f"late originals and {len(corrections)} NOT_DELIVERED corrections")

    assert load.sent == len(load.confirmed), "every notification was confirmed in the end"
    assert {k: n for k, n in in_index.items() if n != 1} == {}, "each exactly once"
    assert set(in_index) == set(confirmed)
    assert {e: logged[e] for e in answered if logged[e] != 1} == {}
    assert {r.status for r in load.reads} <= {200, 503}
    assert during, "some reads fell wholly within the outage"
    assert all(r.status == 503 for r in during)
    # Within the outage the access event cannot be written: the audit refuses. A read that
    # straddles the kill or the restart may instead find its consent call failed while every
    # Kafka client on this one loop reconnects: refused as well, fail closed, with no data.
    assert {r.body["code"] for r in during} == {"audit.unavailable"}
    for r in refused:
        assert r.body["code"] in {"audit.unavailable", "decision.unavailable"}
        assert "records" not in r.body
        assert "producers" not in r.body
    assert load.reads[-1].status == 200  # served again after the restart
    assert len(corrections) <= len(refused)
    assert not {e for e in answered if outcomes[e] == "not_delivered"}
