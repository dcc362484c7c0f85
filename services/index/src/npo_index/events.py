"""Kafka: the ingest's batch handler (EngagementUpdate records → validation → one store
transaction) and the IndexChanges records it queues in the outbox (npo_platform.outbox relays
them).

Order of work: the rows and their change records commit together (the outbox); the relay
publishes after the commit and removes what the broker acknowledged. A crash between commit and
publish leaves the records in the outbox, and the next start publishes them (at-least-once).

A record is an ``IndexChanges``: the changes one ingest batch made for one patient, in order,
keyed by the patient id. Each change's event id is derived from (causing event id, engagement
key), so a subscriber that sees a change twice (in the same record again, or in a record formed
differently after a replay) can drop the repeat by its ``meta.event_id``.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from binascii import hexlify
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache, partial

from npo_engagement import InvalidUpdate, Rules, transactions_of
from npo_platform.contracts import EngagementUpdate, IndexChange
from npo_platform.kafka import PermanentError, Received, SerializedEvent
from npo_platform.outbox import OutboxRelay

from .domain import Applied, Change
from .store import IncomingEvent, IndexStore

INVALID_IN_BATCH = "batch.has_invalid"
_LOG_APPEND_TIME = 1  # a record's timestamp_type when the broker stamped it on append
log = logging.getLogger(__name__)


@dataclass
class IngestHandler:
    """The consumer's batch handler. Idempotent: an event delivered again changes nothing (the
    freshness rule: none of its transactions is newer than what the index holds).

    One invalid message in a batch makes the handler refuse the batch; the platform consumer
    then hands the records over one by one, so only the invalid message is dead-lettered (with
    its EI codes as the reason) and the partition carries on.
    """

    store: IndexStore
    relay: OutboxRelay
    rules: Rules
    _told_create_time: bool = field(default=False, init=False)

    async def __call__(self, batch: Sequence[Received[EngagementUpdate]]) -> None:
        if not self._told_create_time and batch and batch[0].record.timestamp_type != _LOG_APPEND_TIME:
            self._told_create_time = True
            log.warning(
                "the updates topic %s stamps records with the producer's time (CreateTime): EI004's"
                " future check trusts the producer's clock; set message.timestamp.type=LogAppendTime",
                batch[0].record.topic,
            )
        events = [self._validated(received, alone=len(batch) == 1) for received in batch]
        queued = await self.store.apply_batch(events, outbox_messages)
        if queued is not None:
            await self.relay.hand_over(queued.messages, partial(self.store.remove_outbox, [queued.seq]))

    def _validated(self, received: Received[EngagementUpdate], *, alone: bool) -> IncomingEvent:
        # The broker's append time (the topic is LogAppendTime): in the log, so replays decide the same.
        received_at = datetime.fromtimestamp(received.record.timestamp / 1000, UTC)
        try:
            transactions = transactions_of(received.event, self.rules, received_at=received_at)
        except InvalidUpdate as error:
            if alone:
                raise PermanentError(",".join(error.codes), str(error)) from None
            raise PermanentError(INVALID_IN_BATCH, "isolating the invalid message") from None
        return IncomingEvent(received.event.meta.event_id, transactions)


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


def change_event_id(caused_by: str, key: bytes) -> str:
    """Deterministic: the same change always gets the same id, however often it is published."""
    return _change_id(caused_by.encode(), hexlify(key))


def _change_id(caused_by: bytes, key_hex: bytes) -> str:
    """``change_event_id`` from the encoded cause and hex key the change event carries anyway."""
    return _uuid5(b"%s/%s" % (caused_by, key_hex))


def _uuid5(name: bytes) -> str:
    digest = hashlib.sha1(_NAMESPACE_BYTES + name).hexdigest()  # noqa: S324
    # uuid5 by hand (same value as uuid.uuid5): version 5, RFC 4122 variant, no UUID objects.
    variant = _VARIANT[digest[16]]
    return f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-{variant}{digest[17:20]}-{digest[20:32]}"


def encode_change(applied: Applied) -> tuple[str, bytes]:
    """The change event of ``applied``: its id and its serialised ``IndexChange``.

    Encoded by hand in protobuf's wire format (fields in number order, empty ones left out,
    as protobuf itself writes them): building and serialising an IndexChange message was the
    change stream's largest cost. Strings that repeat across a batch (addresses, domains, codes,
    the patient, the times) are encoded once and cached. A test checks the bytes equal
    protobuf's own serialisation over varied records.
    """
    record, version = applied.record, applied.cause.version
    assert record is not None
    assert applied.change is not None
    identity = record.identity
    key_hex = hexlify(record.key)
    cause = version.event_id.encode()
    event_id = _change_id(cause, key_hex)
    meta = _meta(event_id, version.event_time)
    engagement = b"".join((
        _PATIENT(identity.patient), _DOMAIN(identity.service_domain),
        _CATEGORIZATION(identity.categorization), _ADDRESS(identity.logical_address),
        _text(_BOI_TAG, identity.business_object_instance_identifier),
        _PROCESS(identity.clinical_process_interest_id), _CONTENT(record.most_recent_content),
        _SOURCE(identity.source_system), _CONTROLLER(identity.data_controller),
        _OWNER(identity.owner), _CREATION(record.creation_time), _UPDATE(record.update_time),
    ))
    return event_id, b"".join((
        meta, _CHANGE_FIELDS[applied.change], _ENGAGEMENT_TAG, _length(len(engagement)), engagement,
        _KEY_TAG, _length(len(key_hex)), key_hex, _CAUSE_TAG, _length(len(cause)), cause,
    ))


def _meta(event_id: str, at: datetime) -> bytes:
    """An ``EventMeta`` of this service (id, time, source) as field 1 of its event; ``event_id``
    is a uuid5 string of 36 ASCII characters, as ``_uuid5`` makes them."""
    head, tail = _meta_around(at)
    return head + event_id.encode() + tail


@lru_cache(maxsize=4096)
def _meta_around(at: datetime) -> tuple[bytes, bytes]:
    """The bytes of an EventMeta field before and after its event id, for one event time."""
    tail = _EVENT_TIME(at) + _SOURCE_FIELD
    size = len(_EVENT_ID_TAG) + len(_LENGTHS[_UUID_CHARS]) + _UUID_CHARS + len(tail)
    return _META_TAG + _length(size) + _EVENT_ID_TAG + _LENGTHS[_UUID_CHARS], tail


def _length(n: int) -> bytes:
    """A length as protobuf writes it in front of a string or message (a varint)."""
    return _LENGTHS[n] if n < _SHORT else _varint(n)


def _text(tag: bytes, value: str) -> bytes:
    """A string field; an empty string is left out, as protobuf leaves out default values."""
    if not value:
        return b""
    data = value.encode()
    return tag + _length(len(data)) + data


def _cached_text(field: int) -> Callable[[str], bytes]:
    tag = _tag(field, _LENGTH_DELIMITED)

    @lru_cache(maxsize=4096)
    def encode(value: str) -> bytes:
        return _text(tag, value)

    return encode


def _cached_timestamp(field: int) -> Callable[[datetime], bytes]:
    """A ``google.protobuf.Timestamp`` field of an aware datetime (seconds, nanos; zeros left out)."""
    tag = _tag(field, _LENGTH_DELIMITED)

    @lru_cache(maxsize=4096)
    def encode(at: datetime) -> bytes:
        delta = at - _EPOCH
        seconds, nanos = delta.days * 86_400 + delta.seconds, delta.microseconds * 1000
        body = b"".join((
            _tag(1, _VARINT) + _varint(seconds % (1 << 64)) if seconds else b"",  # int64: two's complement
            _tag(2, _VARINT) + _varint(nanos) if nanos else b"",
        ))
        return tag + _length(len(body)) + body

    return encode


_VARINT, _LENGTH_DELIMITED = 0, 2  # wire types


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _varint(n: int) -> bytes:
    """A protobuf base-128 varint of a non-negative number."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SHORT = 4096  # a change is a few hundred bytes; its fields and frame are shorter
_LENGTHS = [_varint(n) for n in range(_SHORT)]
_UUID_CHARS = 36
# Field numbers from events.proto (IndexChange, Engagement, EventMeta), checked by the tests.
_META_TAG, _ENGAGEMENT_TAG = _tag(1, _LENGTH_DELIMITED), _tag(3, _LENGTH_DELIMITED)
_KEY_TAG, _CAUSE_TAG = _tag(4, _LENGTH_DELIMITED), _tag(5, _LENGTH_DELIMITED)
_CHANGE_FIELDS = {change: _tag(2, _VARINT) + _varint(code) for change, code in _CHANGE_TYPES.items()}
_EVENT_ID_TAG, _EVENT_TIME = _tag(1, _LENGTH_DELIMITED), _cached_timestamp(2)
_SOURCE_FIELD = _text(_tag(3, _LENGTH_DELIMITED), SOURCE)
_PATIENT, _DOMAIN, _CATEGORIZATION, _ADDRESS = (_cached_text(n) for n in (1, 2, 3, 4))
_BOI_TAG = _tag(5, _LENGTH_DELIMITED)  # mostly a different value in every record: not cached
_PROCESS, _CONTENT, _SOURCE, _CONTROLLER, _OWNER = (_cached_text(n) for n in (6, 7, 8, 9, 10))
_CREATION, _UPDATE = _cached_timestamp(11), _cached_timestamp(12)


def outbox_messages(changes: Sequence[Applied]) -> list[SerializedEvent]:
    """The OutboxBuilder of the ingest: per patient one ``IndexChanges`` record holding that
    patient's real changes in their order, keyed by the patient id.

    Each change is encoded on its own (``encode_change``) and framed as the record's
    ``changes`` field: a repeated message field's wire format is each element's bytes behind
    its tag and length, so no message tree is built.
    """
    bundles: dict[str, list[_Bundle]] = {}  # per patient, in order: more than one if large
    patient, bundle = "", _Bundle()
    for applied in changes:
        event_id, change = encode_change(applied)
        cause = applied.cause
        if cause.identity.patient != patient:  # a batch's changes come mostly patient by patient
            patient = cause.identity.patient
            if (found := bundles.get(patient)) is None:
                found = bundles[patient] = [_Bundle()]
            bundle = found[-1]
        frame = _CHANGES_TAG + _length(len(change))
        size = len(frame) + len(change)
        if bundle.size + size > MAX_RECORD_BYTES and bundle.ids:
            bundle = _Bundle()
            bundles[patient].append(bundle)
        bundle.ids.append(event_id)
        bundle.parts += (frame, change)
        bundle.size += size
        if cause.version.event_time > bundle.latest:
            bundle.latest = cause.version.event_time
    return [bundle.message(patient) for patient, chunks in bundles.items() for bundle in chunks]


# A record stays well below the broker's default max.message.bytes and aiokafka's default
# max_request_size (1 MiB each; the broker would refuse a larger record, and the relay would
# dead-letter it): a patient with thousands of changes in one batch gets several records, in order
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

    def message(self, patient: str) -> SerializedEvent:
        event_id = _uuid5("+".join(self.ids).encode())  # the same changes, the same record id
        payload = b"".join((_meta(event_id, self.latest), *self.parts))
        return SerializedEvent(event_id, patient, payload)


_CHANGES_TAG = _tag(2, _LENGTH_DELIMITED)  # IndexChanges.changes: each change behind it and its length
