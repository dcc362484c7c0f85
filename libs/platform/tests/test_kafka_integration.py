"""The publisher and the at-least-once consumer loop against the real Kafka broker."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from opentelemetry import trace

from npo_platform.contracts import AccessEvent
from npo_platform.events import event_headers, new_meta
from npo_platform.kafka import (
    DLQ_ATTEMPTS,
    DLQ_DETAIL,
    DLQ_ORIGIN,
    DLQ_REASON,
    EventConsumer,
    EventPublisher,
    PermanentError,
    Received,
    RetryPolicy,
)
from npo_platform.kafka_admin import (
    GroupProgress,
    delete_topics,
    ensure_event_topics,
    ensure_topics,
    topic_configs,
    with_dead_letters,
)
from npo_platform.settings import kafka_client_options
from npo_platform.telemetry import configure_tracing, current_trace_id
from npo_platform.topics import LOG_APPEND_TIME, Topic

pytestmark = pytest.mark.integration

EVENTS = 10_000
PARTITIONS = 3


@pytest.fixture
async def topic(kafka_bootstrap_servers: str) -> Topic:
    """A fresh topic (and its dead-letter topic) for each test."""
    topic = Topic(f"test.access.{uuid.uuid4().hex[:8]}.v1", "patient id", "npo.events.v1.AccessEvent")
    await ensure_topics(kafka_bootstrap_servers, with_dead_letters([topic]), partitions=PARTITIONS)
    return topic


@pytest.fixture
async def publisher(kafka_bootstrap_servers: str) -> AsyncIterator[EventPublisher]:
    publisher = EventPublisher(kafka_bootstrap_servers, client_id="test")
    await publisher.start()
    yield publisher
    await publisher.stop()


def access_event(n: int) -> AccessEvent:
    event = AccessEvent(meta=new_meta("test"), patient_id=f"patient-{n % 97}", reason_code=str(n))
    return event


def consumer_for(
    bootstrap: str, topic: Topic, group: str, publisher: EventPublisher, handler: object
) -> EventConsumer[AccessEvent]:
    return EventConsumer(
        bootstrap_servers=bootstrap, group_id=group, topic=topic, message_type=AccessEvent,
        handler=handler,  # type: ignore[arg-type]
        publisher=publisher, retry=RetryPolicy(attempts=3, initial_backoff_s=0.01),
        max_batch=250,
    )


async def wait_for(condition: Callable[[], bool], seconds: float) -> None:
    """Poll ``condition()`` until it is true or fail after ``seconds``."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - polls counters another task updates
            await asyncio.sleep(0.05)


async def test_ten_thousand_events_survive_a_consumer_killed_half_way(
    kafka_bootstrap_servers: str, topic: Topic, publisher: EventPublisher
) -> None:
    sent = [access_event(n) for n in range(EVENTS)]
    acks = [await publisher.send(topic, e.patient_id, e) for e in sent]
    await asyncio.gather(*acks)

    deliveries: Counter[str] = Counter()

    async def handler(batch: Sequence[Received[AccessEvent]]) -> None:
        deliveries.update(r.event.meta.event_id for r in batch)
        await asyncio.sleep(0.01)  # stands for the write: a kill lands after it, before the commit

    group = f"g-{uuid.uuid4().hex[:8]}"
    first = consumer_for(kafka_bootstrap_servers, topic, group, publisher, handler)
    task = asyncio.create_task(first.run())
    await wait_for(lambda: len(deliveries) >= EVENTS // 2, seconds=60)
    task.cancel()  # abrupt: the batch in flight is neither finished nor committed
    with pytest.raises(asyncio.CancelledError):
        await task
    seen_before_restart = len(deliveries)
    assert seen_before_restart < EVENTS, "the first consumer must be stopped half-way"

    stop = asyncio.Event()
    second = consumer_for(kafka_bootstrap_servers, topic, group, publisher, handler)
    task = asyncio.create_task(second.run(stop))
    await wait_for(lambda: len(deliveries) >= EVENTS, seconds=60)
    await asyncio.sleep(1.0)  # anything still arriving would be a surplus delivery
    stop.set()
    await task

    duplicates = sum(deliveries.values()) - len(deliveries)
    print(f"\n{EVENTS} events: {len(deliveries)} distinct read back, {duplicates} redelivered "
          f"after the restart (stopped at {seen_before_restart})")
    assert set(deliveries) == {e.meta.event_id for e in sent}
    # Redelivery is limited to what the killed consumer had not committed: at most one
    # in-flight batch per partition, never a replay from the start.
    assert duplicates <= PARTITIONS * 250
    assert first.stats.dead_lettered == second.stats.dead_lettered == 0


async def test_bad_records_are_dead_lettered_and_the_consumer_carries_on(
    kafka_bootstrap_servers: str, topic: Topic, publisher: EventPublisher
) -> None:
    good_before, rejected, flaky, good_after = (access_event(n) for n in range(4))
    raw = AIOKafkaProducer(**kafka_client_options(kafka_bootstrap_servers), acks="all")
    await raw.start()
    try:
        await publisher.publish(topic, "p1", good_before)
        await raw.send_and_wait(topic.name, b"\xff\x00garbage", key=b"p1")  # not protobuf at all
        wrong_type = [(k, v) for k, v in event_headers(good_before)]
        wrong_type[0] = ("npo-event-type", b"npo.events.v1.ConsentEvent")
        await raw.send_and_wait(topic.name, b"", key=b"p1", headers=wrong_type)
        await publisher.publish(topic, "p1", rejected)
        await publisher.publish(topic, "p1", flaky)
        await publisher.publish(topic, "p1", good_after)
    finally:
        await raw.stop()

    handled: list[str] = []
    failures = Counter[str]()

    async def handler(batch: Sequence[Received[AccessEvent]]) -> None:
        for received in batch:
            event_id = received.event.meta.event_id
            if event_id == rejected.meta.event_id:
                raise PermanentError("test.rejected", "this event can never be applied")
            if event_id == flaky.meta.event_id and failures[event_id] < 2:
                failures[event_id] += 1
                raise ConnectionError("database briefly unavailable")
        handled.extend(r.event.meta.event_id for r in batch)

    stop = asyncio.Event()
    consumer = consumer_for(kafka_bootstrap_servers, topic, "g-dlq", publisher, handler)
    task = asyncio.create_task(consumer.run(stop))
    await wait_for(lambda: good_after.meta.event_id in handled, seconds=30)
    stop.set()
    await task

    assert good_before.meta.event_id in handled
    assert flaky.meta.event_id in handled, "a transient failure is retried, not dead-lettered"
    assert rejected.meta.event_id not in handled
    assert consumer.stats.dead_letter_reasons == {
        "event.undecodable": 1, "event.wrong_type": 1, "test.rejected": 1,
    }

    dead = await read_all(kafka_bootstrap_servers, topic.dead_letter, expected=3)
    reasons = [dict(r.headers)[DLQ_REASON].decode() for r in dead]
    assert sorted(reasons) == ["event.undecodable", "event.wrong_type", "test.rejected"]
    by_reason = {dict(r.headers)[DLQ_REASON].decode(): r for r in dead}
    assert by_reason["event.undecodable"].value == b"\xff\x00garbage", "the record is kept as it was"
    assert by_reason["test.rejected"].value == rejected.SerializeToString()
    assert dict(by_reason["test.rejected"].headers)[DLQ_DETAIL] == b"this event can never be applied"
    assert dict(by_reason["test.rejected"].headers)[DLQ_ATTEMPTS] == b"1"
    assert dict(by_reason["event.undecodable"].headers)[DLQ_ORIGIN].startswith(topic.name.encode())
    assert all(r.key == b"p1" for r in dead), "dead letters keep the original key"
    async with GroupProgress(kafka_bootstrap_servers, "g-dlq", topic.name) as progress:
        assert await progress.committed() == 6, "every record counts as done, dead letters too"

    # Everything was committed: a new member of the group has nothing left to read.
    leftovers: list[str] = []

    async def record(batch: Sequence[Received[AccessEvent]]) -> None:
        leftovers.extend(r.event.meta.event_id for r in batch)

    stop = asyncio.Event()
    again = consumer_for(kafka_bootstrap_servers, topic, "g-dlq", publisher, record)
    task = asyncio.create_task(again.run(stop))
    await asyncio.sleep(3)
    stop.set()
    await task
    assert leftovers == []


async def test_exhausted_retries_dead_letter_only_the_failing_record(
    kafka_bootstrap_servers: str, topic: Topic, publisher: EventPublisher
) -> None:
    events = [access_event(n) for n in range(5)]
    for event in events:
        await publisher.publish(topic, "same-patient", event)
    poison = events[2].meta.event_id
    handled: list[str] = []

    async def handler(batch: Sequence[Received[AccessEvent]]) -> None:
        if any(r.event.meta.event_id == poison for r in batch):
            raise RuntimeError("always fails")
        handled.extend(r.event.meta.event_id for r in batch)

    stop = asyncio.Event()
    consumer = consumer_for(kafka_bootstrap_servers, topic, "g-poison", publisher, handler)
    task = asyncio.create_task(consumer.run(stop))
    await wait_for(lambda: consumer.stats.dead_lettered == 1 and len(handled) == 4, seconds=30)
    stop.set()
    await task
    assert handled == [e.meta.event_id for e in events if e.meta.event_id != poison]
    dead = await read_all(kafka_bootstrap_servers, topic.dead_letter, expected=1)
    headers = dict(dead[0].headers)
    assert headers[DLQ_REASON] == b"handler.failed"
    assert headers[DLQ_ATTEMPTS] == b"3"
    assert headers[DLQ_DETAIL] == b"RuntimeError: always fails"


async def test_trace_context_travels_in_headers(
    kafka_bootstrap_servers: str, topic: Topic, publisher: EventPublisher
) -> None:
    configure_tracing("test")
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request"):
        sent_trace = current_trace_id()
        await publisher.publish(topic, "p", access_event(1))
    seen: list[str] = []

    async def handler(batch: Sequence[Received[AccessEvent]]) -> None:
        seen.append(current_trace_id())

    stop = asyncio.Event()
    consumer = consumer_for(kafka_bootstrap_servers, topic, "g-trace", publisher, handler)
    task = asyncio.create_task(consumer.run(stop))
    await wait_for(lambda: bool(seen), seconds=30)
    stop.set()
    await task
    assert sent_trace
    assert seen == [sent_trace]


async def read_all(bootstrap: str, topic: str, *, expected: int) -> list[object]:
    """Read ``expected`` records from the start of ``topic`` (fails on timeout)."""
    consumer = AIOKafkaConsumer(topic, **kafka_client_options(bootstrap), auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    records: list[object] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < expected:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def test_delete_topics_removes_only_those_that_exist(kafka_bootstrap_servers: str) -> None:
    names = [f"test.delete.{uuid.uuid4().hex[:8]}.{n}" for n in range(2)]
    kept = f"test.delete.{uuid.uuid4().hex[:8]}.kept"
    await ensure_topics(kafka_bootstrap_servers, [*names, kept])
    await delete_topics(kafka_bootstrap_servers, [*names, "test.delete.never-created"])
    admin = AIOKafkaAdminClient(**kafka_client_options(kafka_bootstrap_servers))
    await admin.start()
    try:
        async with asyncio.timeout(30):  # deletion completes in the background
            while set(names) & set(await admin.list_topics()):  # noqa: ASYNC110 - polls the broker
                await asyncio.sleep(0.1)
        assert kept in await admin.list_topics()
    finally:
        await admin.close()
    await delete_topics(kafka_bootstrap_servers, [kept])


async def test_a_topic_is_created_with_its_settings(kafka_bootstrap_servers: str) -> None:
    """``Topic.config`` reaches the broker through ``ensure_event_topics``: the updates topic's
    records carry the broker's append time, whatever time the producer put on them."""
    topic = Topic(f"test.config.{uuid.uuid4().hex[:8]}", "k", "m", (LOG_APPEND_TIME,))
    plain = Topic(f"test.config.{uuid.uuid4().hex[:8]}", "k", "m")
    assert topic_configs([topic, plain]) == {topic.name: {"message.timestamp.type": "LogAppendTime"}}
    names = [topic.name, plain.name]
    await ensure_event_topics(kafka_bootstrap_servers, [topic, plain])
    producer = AIOKafkaProducer(**kafka_client_options(kafka_bootstrap_servers))
    await producer.start()
    try:
        for name in names:
            await producer.send_and_wait(name, b"v", key=b"k", timestamp_ms=1_000)
    finally:
        await producer.stop()
    stamped = {}
    for name in names:
        consumer = AIOKafkaConsumer(name, **kafka_client_options(kafka_bootstrap_servers),
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), 30)
        finally:
            await consumer.stop()
        stamped[name] = (record.timestamp_type, record.timestamp)
    assert stamped[plain.name] == (0, 1_000)  # CreateTime: the producer's
    kind, at = stamped[topic.name]
    assert kind == 1  # LogAppendTime: the broker's
    assert at > 1_000
    await delete_topics(kafka_bootstrap_servers, with_dead_letters([topic, plain]))


async def test_a_consumer_never_run_leaves_no_client_behind(
    kafka_bootstrap_servers: str, topic: Topic, publisher: EventPublisher
) -> None:
    """An API-only index process builds its worker's consumers but never runs them (npo-index
    with INDEX_RUN_CONSUMER=false); they used to hold Kafka clients that were never closed."""
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _, context: reported.append(context["message"]))
    try:
        idle = consumer_for(kafka_bootstrap_servers, topic, "idle", publisher, _ignore)
        del idle
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert reported == []


async def _ignore(batch: Sequence[Received[AccessEvent]]) -> None:
    return None
