"""IndexChange events: built from applied changes, relayed from the outbox, filtered by subscribers.

Order of work: the rows and their change records commit together (the outbox); the relay
publishes after the commit and removes what the broker acknowledged. A crash between commit and
publish leaves the records in the outbox, and the next start publishes them (at-least-once).

A record is an ``IndexChanges``: the changes one ingest batch made for one patient, in order,
keyed by the patient id. Each change's event id is derived from (causing event id, engagement
key), so a subscriber that sees a change twice (in the same record again, or in a record formed
differently after a replay) can drop the repeat by its ``meta.event_id``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import trace

from npo_platform.contracts import EventMeta, IndexChange, IndexChanges
from npo_platform.contracts.events_pb2 import Engagement
from npo_platform.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER
from npo_platform.kafka import messaging_attributes
from npo_platform.telemetry import inject_headers
from npo_platform.topics import Topic

from .domain import Applied, Change, Record
from .store import IndexStore, OutboxBatch, OutboxMessage

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SOURCE = "npo-index"
CHANGE_NAMESPACE = uuid.UUID("5b0b5e8e-6a4c-4f38-9a59-3f5f0c1d2e71")  # never change: ids must stay stable
_CHANGE_TYPES = {
    Change.CREATED: IndexChange.CREATED,
    Change.CONTENT_UPDATED: IndexChange.CONTENT_UPDATED,
    Change.DELETED: IndexChange.DELETED,
}


_NAMESPACE_BYTES = CHANGE_NAMESPACE.bytes  # UUID.bytes is computed at every access
_VARIANT = {digit: "89ab"[int(digit, 16) & 0x3] for digit in "0123456789abcdef"}  # RFC 4122 variant


def change_event_id(caused_by: str, key: bytes, key_hex: str | None = None) -> str:
    """Deterministic: the same change always gets the same id, however often it is published."""
    return _uuid5(f"{caused_by}/{key_hex or key.hex()}")


def _uuid5(text: str) -> str:
    digest = hashlib.sha1(_NAMESPACE_BYTES + text.encode()).hexdigest()  # noqa: S324
    # uuid5 by hand (same value as uuid.uuid5): version 5, RFC 4122 variant, no UUID objects.
    variant = _VARIANT[digest[16]]
    return f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-{variant}{digest[17:20]}-{digest[20:32]}"


def engagement_of(record: Record, engagement: Engagement | None = None) -> Engagement:
    """The engagement as the change event carries it; fills ``engagement`` (every field) if given."""
    engagement = Engagement() if engagement is None else engagement
    (
        engagement.registered_resident_identification, engagement.service_domain,
        engagement.categorization, engagement.logical_address,
        engagement.business_object_instance_identifier, engagement.clinical_process_interest_id,
        engagement.source_system, engagement.data_controller, engagement.owner,
    ) = record.identity.parts()
    engagement.most_recent_content = record.most_recent_content
    engagement.creation_time.CopyFrom(_timestamp(record.creation_time))
    engagement.update_time.CopyFrom(_timestamp(record.update_time))
    return engagement


@lru_cache(maxsize=4096)
def _timestamp(at: datetime) -> Timestamp:
    """An aware datetime as a Timestamp to copy from, never to change (cached: a batch shares
    few event times, and one CopyFrom costs less than setting seconds and nanos)."""
    delta = at - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def index_change(applied: Applied, event: IndexChange | None = None) -> IndexChange:
    """The change event of ``applied``; fills ``event`` (every field) if given: reusing one
    message for a batch saves building five protobuf objects per change."""
    assert applied.record is not None
    assert applied.change is not None
    event = IndexChange() if event is None else event
    cause = applied.cause.version
    key_hex = applied.record.key.hex()
    meta = event.meta
    meta.event_id = change_event_id(cause.event_id, applied.record.key, key_hex)
    meta.source = SOURCE
    meta.event_time.CopyFrom(_timestamp(cause.event_time))
    event.change = _CHANGE_TYPES[applied.change]
    engagement_of(applied.record, event.engagement)
    event.engagement_key = key_hex
    event.caused_by_event_id = cause.event_id
    return event


def outbox_messages(changes: Sequence[Applied]) -> list[OutboxMessage]:
    """The OutboxBuilder of the ingest: per patient one ``IndexChanges`` record holding that
    patient's real changes in their order, keyed by the patient id.

    The changes are serialised one by one (one reused IndexChange) and framed as the record's
    ``changes`` field: a repeated message field's wire format is each element's bytes behind its
    tag and length, so no second message tree is built (a test checks the bytes are the same as
    protobuf's own serialisation of the IndexChanges).
    """
    bundles: dict[str, list[_Bundle]] = {}  # per patient, in order: more than one if large
    event = IndexChange()
    patient, bundle = "", _Bundle()
    for applied in changes:
        index_change(applied, event)
        cause = applied.cause
        if cause.identity.patient != patient:  # a batch's changes come mostly patient by patient
            patient = cause.identity.patient
            if (found := bundles.get(patient)) is None:
                found = bundles[patient] = [_Bundle()]
            bundle = found[-1]
        change = event.SerializeToString()
        frame = _frame(len(change))
        if bundle.size + len(frame) + len(change) > MAX_RECORD_BYTES and bundle.ids:
            bundle = _Bundle()
            bundles[patient].append(bundle)
        bundle.ids.append(event.meta.event_id)
        bundle.parts += (frame, change)
        bundle.size += len(frame) + len(change)
        if cause.version.event_time > bundle.latest:
            bundle.latest = cause.version.event_time
    return [bundle.message(patient) for patient, chunks in bundles.items() for bundle in chunks]


# A record stays well below the broker's default max.message.bytes and aiokafka's default
# max_request_size (1 MiB each; a larger record would be refused, and the relay would retry it
# for ever): a patient with thousands of changes in one batch gets several records, in order
# (same key, same partition).
MAX_RECORD_BYTES = 256 * 1024
_META_BYTES = 128  # a record's meta with its tag and length (id, time, source: ~65 bytes)


class _Bundle:
    """One patient's serialised changes, their ids, size and the latest event time among them."""

    __slots__ = ("ids", "latest", "parts", "size")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.parts: list[bytes] = []
        self.latest = _EPOCH
        self.size = _META_BYTES  # what the record holds besides the changes' frames and bytes

    def message(self, patient: str) -> OutboxMessage:
        event_id = _uuid5("+".join(self.ids))  # the same changes, the same record id
        meta = EventMeta(event_id=event_id, source=SOURCE)
        meta.event_time.CopyFrom(_timestamp(self.latest))
        head = meta.SerializeToString()
        payload = b"".join((_META_TAG, _varint(len(head)), head, *self.parts))
        return OutboxMessage(event_id, patient, payload)


# Field tags of IndexChanges (field number << 3 | wire type 2, length-delimited).
_META_TAG = bytes([IndexChanges.META_FIELD_NUMBER << 3 | 2])
_CHANGES_TAG = bytes([IndexChanges.CHANGES_FIELD_NUMBER << 3 | 2])


def _varint(n: int) -> bytes:
    """A protobuf base-128 varint (of a length: never negative)."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_FRAMES = [_CHANGES_TAG + _varint(n) for n in range(4096)]  # a change is a few hundred bytes


def _frame(length: int) -> bytes:
    """The tag and length in front of one change of ``length`` bytes."""
    return _FRAMES[length] if length < 4096 else _CHANGES_TAG + _varint(length)


class BatchPublisher:
    """Sends pre-serialised events in per-partition record batches (acks=all, idempotent).

    The platform's EventPublisher sends one record at a time with a span each, which costs more
    than the whole ingest of an update; this sender keys records exactly as it does (Kafka's
    default murmur2 partitioner over the key) and traces the batch once. Generic plumbing that
    belongs in npo_platform.kafka eventually.
    """

    def __init__(self, bootstrap_servers: str, *, client_id: str = "npo-index", linger_ms: int = 5) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers, client_id=client_id, acks="all",
            enable_idempotence=True, linger_ms=linger_ms,
            max_batch_size=512 * 1024,  # the 16 KiB default holds ~30 changes: too many requests
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, topic: Topic, messages: Sequence[OutboxMessage]) -> None:
        """Send every message and wait until the broker acknowledged all of them."""
        with tracer.start_as_current_span(
            f"publish {topic.name}", kind=trace.SpanKind.PRODUCER,
            attributes={**messaging_attributes(topic.name),
                        "messaging.batch.message_count": len(messages)},
        ):
            context = inject_headers([(EVENT_TYPE_HEADER, topic.message.encode())])
        partitions = sorted(await self._producer.partitions_for(topic.name))
        by_partition: dict[int, list[OutboxMessage]] = {}
        for m in messages:
            by_partition.setdefault(_partition(m.key, partitions), []).append(m)
        futures = []
        for partition, group in by_partition.items():
            batch = self._producer.create_batch()
            for m in group:
                headers = [*context, (EVENT_ID_HEADER, m.event_id.encode())]
                if batch.append(key=m.key.encode(), value=m.payload, timestamp=None, headers=headers) is None:
                    futures.append(await self._producer.send_batch(batch, topic.name, partition=partition))
                    batch = self._producer.create_batch()
                    batch.append(key=m.key.encode(), value=m.payload, timestamp=None, headers=headers)
            futures.append(await self._producer.send_batch(batch, topic.name, partition=partition))
        await asyncio.gather(*futures)


@lru_cache(maxsize=200_000)
def _hash(key: str) -> int:
    hashed: int = murmur2(key.encode()) & 0x7FFFFFFF
    return hashed


def _partition(key: str, partitions: list[int]) -> int:
    """Kafka's default partitioner (as aiokafka and the Java client): murmur2 of the key."""
    return partitions[_hash(key) % len(partitions)]


class OutboxRelay:
    """Publishes committed outbox batches in commit order, then removes them from the outbox.

    Ingest hands each committed batch over and carries on (a bounded queue applies back
    pressure), so publication overlaps the next batch's database work. A batch whose
    publication fails is retried until it succeeds or the worker stops; what is not yet
    acknowledged stays in the outbox and is published by ``drain`` at the next start.
    """

    def __init__(self, store: IndexStore, sender: BatchPublisher, topic: Topic, *, queue_size: int = 8):
        self.store, self.sender, self.topic = store, sender, topic
        self._queue: asyncio.Queue[OutboxBatch] = asyncio.Queue(queue_size)

    async def enqueue(self, batch: OutboxBatch | None) -> None:
        if batch is not None:
            await self._queue.put(batch)

    async def publish(self, batch: OutboxBatch) -> None:
        await self.sender.publish(self.topic, batch.messages)
        await self.store.remove_outbox([batch.seq])

    async def run(self, stop: asyncio.Event) -> None:
        """Publish queued batches until ``stop`` is set and the queue is empty."""
        while not (stop.is_set() and self._queue.empty()):
            try:
                batch = await asyncio.wait_for(self._queue.get(), 0.2)
            except TimeoutError:
                continue
            await self._publish_until_done(batch, stop)

    async def _publish_until_done(self, batch: OutboxBatch, stop: asyncio.Event) -> None:
        while True:
            try:
                await self.publish(batch)
                return
            except Exception as error:  # broker or database away: keep the order, try again
                log.warning("outbox batch %s not published (%s); retrying", batch.seq, type(error).__name__)
                if stop.is_set():
                    return  # left in the outbox for the next start
                await asyncio.sleep(1.0)

    async def drain(self, limit: int = 100) -> int:
        """Publish what an earlier process left in the outbox; returns how many messages were sent."""
        sent = 0
        while pending := await self.store.pending_outbox(limit):
            for batch in pending:
                await self.publish(batch)
                sent += len(batch.messages)
        return sent
