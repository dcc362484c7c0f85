"""The outbox relay and the batch publisher: order, confirmation, backoff, wake-up, dead letters.

The relay's loop is tested with a fake publisher (unit); what reaches the broker, the partitions
records land in and a record the broker refuses for good, against the real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from npo_platform.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER
from npo_platform.kafka import DLQ_REASON, BatchPublisher, RetryPolicy, SerializedEvent
from npo_platform.kafka_admin import ensure_topics, with_dead_letters
from npo_platform.outbox import OutboxRelay, Publish
from npo_platform.settings import kafka_client_options
from npo_platform.topics import Topic

TOPIC = Topic("test.outbox.v1", "patient id", "npo.events.v1.ConsentEvent")
FAST = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.05)


def event(n: int, size: int = 10) -> SerializedEvent:
    return SerializedEvent(str(uuid.uuid4()), f"patient-{n % 7}", bytes([n % 256]) * size)


class ListOutbox:
    """An outbox of events in commit order; ``relay`` marks what ``publish`` returned from."""

    def __init__(self, events: Sequence[SerializedEvent] = ()) -> None:
        self.pending = list(events)
        self.reads = 0

    async def relay(self, publish: Publish, limit: int = 500) -> int:
        self.reads += 1
        taken = self.pending[:limit]
        if taken:
            await publish(taken)
            del self.pending[: len(taken)]
        return len(taken)


class FakePublisher:
    """Fails the first ``failures`` calls with a connection error, then records what it gets."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0
        self.sent: list[SerializedEvent] = []

    async def publish(self, topic: Topic, events: Sequence[SerializedEvent]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise KafkaConnectionError("broker away")
        self.sent.extend(events)


async def until(condition: object, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 - polls another task's work
            await asyncio.sleep(0.01)


async def test_handed_over_events_are_published_in_order_and_then_confirmed() -> None:
    publisher, confirmed = FakePublisher(failures=3), []
    relay = OutboxRelay(ListOutbox(), publisher, TOPIC, interval_s=None, retry=FAST)  # type: ignore[arg-type]
    first, second = [event(1), event(2)], [event(3)]
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))

    async def confirm(batch: list[SerializedEvent]) -> None:
        assert all(e in publisher.sent for e in batch), "confirmed before the broker had it"
        confirmed.append(batch)

    await relay.hand_over(first, lambda: confirm(first))
    await relay.hand_over(second, lambda: confirm(second))
    await until(lambda: len(confirmed) == 2)
    stop.set()
    await task
    assert publisher.sent == first + second
    assert confirmed == [first, second]
    assert relay.failures == 3  # the broker's absence was retried, not skipped


async def test_a_relay_stopped_while_the_broker_is_away_leaves_the_events_unconfirmed() -> None:
    publisher, confirmed = FakePublisher(failures=10**6), []
    relay = OutboxRelay(ListOutbox(), publisher, TOPIC, interval_s=None, retry=FAST)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))

    async def confirm() -> None:
        confirmed.append(True)

    await relay.hand_over([event(1)], confirm)
    await until(lambda: relay.failures >= 3)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert confirmed == []  # still in the outbox: the next start publishes it


async def test_the_backoff_grows_to_its_bound_and_is_not_a_busy_loop() -> None:
    publisher = FakePublisher(failures=10**6)
    retry = RetryPolicy(initial_backoff_s=0.05, max_backoff_s=0.1)
    relay = OutboxRelay(ListOutbox([event(1)]), publisher, TOPIC, interval_s=0.01, retry=retry)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await asyncio.sleep(1.0)
    stop.set()
    await task
    # 0.05 then 0.1 s between tries: about ten in a second, never hundreds (a fixed 0.01 s
    # interval would allow a hundred); and more than one, so it does retry.
    assert 2 <= publisher.calls <= 15


async def test_a_wake_publishes_at_once_without_waiting_for_the_interval() -> None:
    outbox, publisher = ListOutbox(), FakePublisher()
    relay = OutboxRelay(outbox, publisher, TOPIC, interval_s=3600)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await until(lambda: outbox.reads >= 1)  # the first round found nothing and sleeps an hour
    outbox.pending.append(first := event(1))
    relay.wake()
    await until(lambda: publisher.sent == [first], seconds=5)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert outbox.pending == []


@pytest.fixture
async def batch_publisher(kafka_bootstrap_servers: str) -> AsyncIterator[BatchPublisher]:
    async with BatchPublisher(kafka_bootstrap_servers, client_id="test-outbox") as publisher:
        yield publisher


async def read_all(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes, dict[str, bytes]]]:
    consumer = AIOKafkaConsumer(topic, **kafka_client_options(bootstrap), auto_offset_reset="earliest")
    await consumer.start()
    found: list[tuple[int, bytes, dict[str, bytes]]] = []
    try:
        async with asyncio.timeout(30):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [(r.partition, r.value or b"", dict(r.headers)) for r in records]
    finally:
        await consumer.stop()
    return found


@pytest.mark.integration
async def test_a_record_the_broker_refuses_for_good_is_dead_lettered_and_the_rest_published(
    kafka_bootstrap_servers: str, batch_publisher: BatchPublisher
) -> None:
    topic = Topic(f"test.outbox.{uuid.uuid4().hex[:8]}.v1", "patient id", "npo.events.v1.ConsentEvent")
    await ensure_topics(kafka_bootstrap_servers, with_dead_letters([topic]), partitions=1,
                        configs={topic.name: {"max.message.bytes": "2000"}})
    small, large, after = event(1), event(2, size=10_000), event(3)
    outbox = ListOutbox([small, large, after])
    relay = OutboxRelay(outbox, batch_publisher, topic, retry=FAST)

    assert await relay.flush() == 3
    assert outbox.pending == []
    published = await read_all(kafka_bootstrap_servers, topic.name, 2)
    assert [value for _, value, _ in published] == [small.payload, after.payload]
    ((_, value, headers),) = await read_all(kafka_bootstrap_servers, f"{topic.name}.dlq", 1)
    assert value == large.payload
    assert headers[DLQ_REASON] == b"publish.refused"
    assert headers[EVENT_ID_HEADER] == large.event_id.encode()
    assert (relay.published, relay.dead_lettered) == (2, 1)


@pytest.mark.integration
async def test_the_batch_publisher_keys_as_kafka_does_and_names_type_and_id(
    kafka_bootstrap_servers: str, batch_publisher: BatchPublisher
) -> None:
    topic = Topic(f"test.outbox.{uuid.uuid4().hex[:8]}.v1", "patient id", "npo.events.v1.ConsentEvent")
    await ensure_topics(kafka_bootstrap_servers, [topic.name], partitions=3)
    events = [event(n) for n in range(60)]
    await batch_publisher.publish(topic, events)

    found = await read_all(kafka_bootstrap_servers, topic.name, len(events))
    partition_of: dict[str, int] = {}
    for partition, _value, headers in found:
        assert headers[EVENT_TYPE_HEADER] == topic.message.encode()
        key = next(e.key for e in events if e.event_id.encode() == headers[EVENT_ID_HEADER])
        assert partition_of.setdefault(key, partition) == partition  # one key, one partition
    # The same partitions as aiokafka's own default partitioner picks for these keys.
    from aiokafka.partitioner import DefaultPartitioner

    for key, partition in partition_of.items():
        assert DefaultPartitioner()(key.encode(), [0, 1, 2], [0, 1, 2]) == partition
