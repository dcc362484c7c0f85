"""Kafka plumbing: the producers' one configuration, an event publisher, a batch publisher of
serialised records and an at-least-once consumer loop with dead letters."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Self, TypeVar

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.partitioner import murmur2
from aiokafka.structs import OffsetAndMetadata
from google.protobuf.message import Message
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from npo_platform.events import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    InvalidEvent,
    decode,
    event_headers,
    header,
)
from npo_platform.settings import kafka_client_options
from npo_platform.telemetry import extract_context, inject_headers, redact
from npo_platform.topics import Topic, dead_letter_topic

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

M = TypeVar("M", bound=Message)

DLQ_REASON = "npo-dlq-reason"
DLQ_DETAIL = "npo-dlq-detail"
DLQ_ORIGIN = "npo-dlq-origin"  # topic/partition/offset of the original record
DLQ_GROUP = "npo-dlq-group"
DLQ_ATTEMPTS = "npo-dlq-attempts"
DLQ_FAILED_AT = "npo-dlq-failed-at"


class PermanentError(Exception):
    """Raised by a handler for input that can never succeed: dead-lettered at once, no retry."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


# What every producer of the platform promises about delivery, in this one place: a write is
# acknowledged only when every in-sync replica has it, retried sends are not duplicated, and a
# send not acknowledged within the delivery timeout fails (aiokafka expires a batch after its
# request timeout; there is no separate delivery.timeout.ms).
PRODUCER_DELIVERY: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "request_timeout_ms": 40_000,
}


def create_producer(
    bootstrap_servers: str, *, client_id: str, linger_ms: int, max_batch_size: int = 16_384
) -> AIOKafkaProducer:
    """An aiokafka producer with the platform's delivery settings; every publisher is made here."""
    return AIOKafkaProducer(
        **kafka_client_options(bootstrap_servers), client_id=client_id, linger_ms=linger_ms,
        max_batch_size=max_batch_size, **PRODUCER_DELIVERY,
    )


class _Publisher:
    """A publisher's life: ``start``/``stop``, or ``async with`` for both."""

    _producer: AIOKafkaProducer

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


class EventPublisher(_Publisher):
    """Publishes protobuf events with acks=all and idempotence; returns once the broker has them."""

    def __init__(self, bootstrap_servers: str, *, client_id: str = "npo", linger_ms: int = 5):
        self._producer = create_producer(bootstrap_servers, client_id=client_id, linger_ms=linger_ms)

    async def publish(self, topic: Topic, key: str, event: Message) -> None:
        """Write one event and wait for the broker's acknowledgement (all in-sync replicas)."""
        await (await self.send(topic, key, event))

    async def send(self, topic: Topic, key: str, event: Message) -> asyncio.Future[object]:
        """Queue one event; the returned future resolves when the broker acknowledged it.

        The send has a PRODUCER span, and the record carries its context: the caller's own
        when one is current and open (it already stands for this send, as the query service's
        access event does; a second one inside it would add a span's cost to every event for
        nothing a trace reader needs), else its own.
        """
        if _open_producer_span(trace.get_current_span()):
            headers = inject_headers(event_headers(event))
        else:
            with tracer.start_as_current_span(
                f"publish {topic.name}", kind=trace.SpanKind.PRODUCER,
                attributes=messaging_attributes(topic.name),
            ):
                headers = inject_headers(event_headers(event))
        future: asyncio.Future[object] = await self._producer.send(
            topic.name, value=event.SerializeToString(), key=key.encode(), headers=headers
        )
        return future

    async def send_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        """Write bytes as they are (dead letters keep the original record) and wait for the ack."""
        await (await self._producer.send(topic, value=value, key=key, headers=headers))


class SerializedEvent(msgspec.Struct, frozen=True, gc=False):
    """An event ready to publish: its id, its Kafka key and its serialised protobuf message."""

    event_id: str
    key: str
    payload: bytes


def serialized(event: Message, key: str) -> SerializedEvent:
    """``event`` (an event with ``meta``) ready for the BatchPublisher, keyed by ``key``."""
    return SerializedEvent(getattr(event, "meta").event_id, key, event.SerializeToString())  # noqa: B009


class BatchPublisher(_Publisher):
    """Publishes serialised events in per-partition record batches (an outbox's work).

    EventPublisher sends one record at a time with a span each, which costs more than a whole
    ingest step of the index; this one keys records exactly as it does (Kafka's default murmur2
    partitioner over the key), builds one record batch per partition and traces the call once.
    Each record carries the event type and id headers EventPublisher gives it.
    """

    def __init__(
        self, bootstrap_servers: str, *, client_id: str = "npo", linger_ms: int = 5,
        max_batch_size: int = 512 * 1024,  # the 16 KiB default holds few records: too many requests
    ) -> None:
        self._make = functools.partial(
            create_producer, bootstrap_servers, client_id=client_id, linger_ms=linger_ms,
            max_batch_size=max_batch_size,
        )
        self._producer = self._make()

    async def publish(self, topic: Topic, events: Sequence[SerializedEvent]) -> None:
        """Send every event and wait until the broker acknowledged all of them.

        After a refusal that is not retriable the producer is replaced before the error is
        raised: an idempotent producer whose batch was refused has a gap in its sequence
        numbers, and the broker would refuse everything it sends next (OutOfOrderSequenceNumber).
        """
        try:
            await self._publish(topic, events)
        except KafkaError as error:
            if not error.retriable:
                await self._renew()
            raise

    async def _renew(self) -> None:
        old, self._producer = self._producer, self._make()
        await old.stop()
        await self._producer.start()

    async def _publish(self, topic: Topic, events: Sequence[SerializedEvent]) -> None:
        with tracer.start_as_current_span(
            f"publish {topic.name}", kind=trace.SpanKind.PRODUCER,
            attributes={**messaging_attributes(topic.name),
                        "messaging.batch.message_count": len(events)},
        ):
            context = inject_headers([(EVENT_TYPE_HEADER, topic.message.encode())])
        partitions = sorted(await self._producer.partitions_for(topic.name))
        by_partition: dict[int, list[SerializedEvent]] = {}
        for e in events:
            by_partition.setdefault(_partition(e.key, partitions), []).append(e)
        futures = []
        for partition, group in by_partition.items():
            batch = self._producer.create_batch()
            for e in group:
                headers = [*context, (EVENT_ID_HEADER, e.event_id.encode())]
                if batch.append(key=e.key.encode(), value=e.payload, timestamp=None, headers=headers) is None:
                    futures.append(await self._producer.send_batch(batch, topic.name, partition=partition))
                    batch = self._producer.create_batch()
                    batch.append(key=e.key.encode(), value=e.payload, timestamp=None, headers=headers)
            futures.append(await self._producer.send_batch(batch, topic.name, partition=partition))
        await asyncio.gather(*futures)

    async def dead_letter(self, topic: Topic, event: SerializedEvent, code: str, detail: str) -> None:
        """Write ``event`` to ``<topic>.dlq`` with why it was refused, and wait for the ack."""
        headers = [
            (EVENT_TYPE_HEADER, topic.message.encode()), (EVENT_ID_HEADER, event.event_id.encode()),
            (DLQ_REASON, code.encode()), (DLQ_DETAIL, redact(detail)[:1000].encode()),
            (DLQ_ORIGIN, f"outbox/{topic.name}".encode()),
            (DLQ_FAILED_AT, datetime.now(UTC).isoformat().encode()),
        ]
        dead_letters = dead_letter_topic(topic.name)
        await (await self._producer.send(dead_letters, event.payload, event.key.encode(), headers=headers))


@functools.lru_cache(maxsize=200_000)
def _hash(key: str) -> int:
    hashed: int = murmur2(key.encode()) & 0x7FFFFFFF
    return hashed


def _partition(key: str, partitions: list[int]) -> int:
    """Kafka's default partitioner (as aiokafka and the Java client): murmur2 of the key."""
    return partitions[_hash(key) % len(partitions)]


def messaging_attributes(topic: str) -> dict[str, str]:
    """The OpenTelemetry messaging attributes of a span that publishes to ``topic``."""
    return {"messaging.system": "kafka", "messaging.destination.name": topic}


def _open_producer_span(span: trace.Span) -> bool:
    return (isinstance(span, ReadableSpan) and span.kind is trace.SpanKind.PRODUCER
            and span.is_recording())


@dataclass(frozen=True)
class Received(Generic[M]):
    """A decoded event and the record it came from."""

    event: M
    record: ConsumerRecord[bytes, bytes]

    @property
    def key(self) -> str:
        return self.record.key.decode(errors="replace") if self.record.key else ""

    @property
    def headers(self) -> tuple[tuple[str, bytes], ...]:
        return tuple(self.record.headers)


BatchHandler = Callable[[Sequence[Received[M]]], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff before a record is dead-lettered."""

    attempts: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0


@dataclass
class ConsumerStats:
    """Counters a consumer keeps (exposed for health endpoints and tests)."""

    handled: int = 0
    dead_lettered: int = 0
    retries: int = 0
    commits: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)


class EventConsumer(Generic[M]):
    """At-least-once consumer: commits a partition's offsets only after its records were handled.

    The handler receives the decoded events of one partition in offset order, in batches of up to
    ``max_batch``. It must be idempotent (use ``event.meta.event_id``): after a crash or a
    rebalance, records handled but not yet committed are delivered again. A record that cannot
    be decoded, or that its handler rejects with PermanentError, or that still fails after the
    retry policy, goes to ``<topic>.dlq`` with the reason in headers; the loop then carries on.
    """

    _consumer: AIOKafkaConsumer  # one per run: a consumer never run holds no client to close

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        group_id: str,
        topic: Topic,
        message_type: type[M],
        handler: BatchHandler[M],
        publisher: EventPublisher,
        retry: RetryPolicy | None = None,
        max_batch: int = 500,
        auto_offset_reset: str = "earliest",
    ) -> None:
        self.topic = topic
        self.group_id = group_id
        self.stats = ConsumerStats()
        self._message_type = message_type
        self._handler = handler
        self._publisher = publisher
        self._retry = retry or RetryPolicy()
        self._max_batch = max_batch
        self._connect: dict[str, Any] = {
            **kafka_client_options(bootstrap_servers), "group_id": group_id,
            "enable_auto_commit": False, "auto_offset_reset": auto_offset_reset,
            "max_poll_records": max_batch,
        }

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set or the task is cancelled; always leaves the group."""
        stop = stop or asyncio.Event()
        self._consumer = AIOKafkaConsumer(self.topic.name, **self._connect)
        await self._consumer.start()
        try:
            while not stop.is_set():
                batches = await self._consumer.getmany(timeout_ms=200, max_records=self._max_batch)
                for tp, records in batches.items():
                    await self._handle_partition(records)
                    await self._commit(tp, records[-1].offset + 1)
        finally:
            await self._consumer.stop()

    async def _commit(self, tp: TopicPartition, next_offset: int) -> None:
        try:
            await self._consumer.commit({tp: OffsetAndMetadata(next_offset, "")})
        except (CommitFailedError, IllegalStateError) as exc:
            # The partition moved to another member during handling; it will see these
            # records again (at-least-once), which idempotent handlers absorb.
            log.info("commit of %s skipped after rebalance: %s", tp, type(exc).__name__)
            return
        self.stats.commits += 1

    async def _handle_partition(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        decoded: list[Received[M]] = []
        for record in records:
            try:
                decoded.append(self._decode(record))
            except InvalidEvent as exc:
                await self._dead_letter(record, exc.code, exc.detail, attempts=1)
        if decoded and not await self._try(decoded):
            # Isolate the failing record(s): the rest of the batch must still be handled.
            for one in decoded if len(decoded) > 1 else ():
                await self._try([one])

    async def _try(self, batch: list[Received[M]]) -> bool:
        """Handle a batch with bounded retries; dead-letter a single record that keeps failing."""
        attempts = 0
        try:
            async for attempt in self._retrying():
                with attempt:
                    attempts += 1
                    await self._call_handler(batch)
        except PermanentError as exc:
            return await self._give_up(batch, exc.code, exc.detail, attempts)
        except RetryError as exc:
            error = exc.last_attempt.exception()
            return await self._give_up(batch, "handler.failed", _describe(error), attempts)
        self.stats.handled += len(batch)
        self.stats.retries += attempts - 1
        return True

    async def _give_up(
        self, batch: list[Received[M]], code: str, detail: str, attempts: int
    ) -> bool:
        if len(batch) > 1:
            return False  # the caller retries record by record
        await self._dead_letter(batch[0].record, code, detail, attempts)
        return True

    def _retrying(self) -> AsyncRetrying:
        policy = self._retry
        return AsyncRetrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait_exponential(multiplier=policy.initial_backoff_s, max=policy.max_backoff_s),
            retry=retry_if_not_exception_type((PermanentError, asyncio.CancelledError)),
            reraise=False,
        )

    async def _call_handler(self, batch: list[Received[M]]) -> None:
        first = batch[0].record
        with tracer.start_as_current_span(
            f"process {first.topic}",
            context=extract_context(first.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": first.topic,
                "messaging.consumer.group.name": self.group_id,
                "messaging.batch.message_count": len(batch),
            },
        ):
            await self._handler(batch)

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> Received[M]:
        return Received(decode(self._message_type, record.value, record.headers), record)

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], code: str, detail: str, attempts: int
    ) -> None:
        """Copy the record as it was to ``<topic>.dlq``, adding why and where it failed."""
        reason = [
            (DLQ_REASON, code.encode()),
            (DLQ_DETAIL, redact(detail)[:1000].encode()),
            (DLQ_ORIGIN, f"{record.topic}/{record.partition}/{record.offset}".encode()),
            (DLQ_GROUP, self.group_id.encode()),
            (DLQ_ATTEMPTS, str(attempts).encode()),
            (DLQ_FAILED_AT, datetime.now(UTC).isoformat().encode()),
        ]
        headers = [*record.headers, *reason]
        await self._publisher.send_raw(
            dead_letter_topic(record.topic), record.key, record.value, headers
        )
        self.stats.dead_lettered += 1
        self.stats.dead_letter_reasons[code] = self.stats.dead_letter_reasons.get(code, 0) + 1
        log.warning(
            "dead-lettered record %s/%s/%s (event %s): %s", record.topic, record.partition,
            record.offset, header(record.headers, EVENT_ID_HEADER) or "?", code,
        )


def _describe(error: BaseException | None) -> str:
    """Exception class and message for the dead-letter header (PNR-shaped numbers are masked)."""
    return f"{type(error).__name__}: {error}" if error else "unknown"
