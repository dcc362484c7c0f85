"""Audit records and their hash chain: canonical encoding, linking and checking (no I/O)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from google.protobuf.timestamp_pb2 import Timestamp

from npo_platform.contracts import AccessEvent, ConsentEvent
from npo_platform.contracts.events_pb2 import AccessOutcome, ActivityType

GENESIS_HASH = bytes(32)
# One encoder: json.dumps with options builds a new one per call, which dominates the cost.
_CANONICAL_JSON = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


class Kind(StrEnum):
    ACCESS = "access"
    CONSENT = "consent"
    REVIEW = "review"


@dataclass(frozen=True, slots=True)
class Entry:
    """What a record says, before it is linked into a chain."""

    kind: Kind
    event_id: str
    event_time: datetime
    patient_id: str
    user_hsa_id: str
    care_unit: str
    care_giver: str
    activity: int
    basis: int
    outcome: int
    purpose: str
    categories: tuple[str, ...]
    payload: bytes
    # What this record is about: for a review, the reviewed event id or "flag:<id>".
    subject: str = ""
    # Derived from the payload (so covered by the hash), kept apart for the rules:
    protected_identity: bool = False
    reader_name: str = ""
    relation: RelationChange | None = None


@dataclass(frozen=True)
class RelationChange:
    """A patient relation registered (with its validity) or ended, from a consent event."""

    record_id: str
    ended: bool
    valid_from: datetime | None = None
    valid_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """An entry linked into a chain: position, time of recording and hashes."""

    chain: str
    seq: int
    recorded_at: datetime
    entry: Entry
    prev_hash: bytes
    hash: bytes


def utc_micros(moment: datetime) -> datetime:
    """The same instant in UTC at microsecond precision (what PostgreSQL stores)."""
    return moment.astimezone(UTC)


def _time(value: datetime) -> str:
    # Both sides of the chain (writer and verifier) hold UTC datetimes: no conversion needed.
    return (value if value.tzinfo is UTC else value.astimezone(UTC)).isoformat(timespec="microseconds")


def canonical(chain: str, seq: int, recorded_at: datetime, entry: Entry) -> bytes:
    """The exact bytes a record's hash covers: every stored column except the hashes."""
    fields = [
        chain, seq, entry.kind.value, entry.event_id, _time(entry.event_time), _time(recorded_at),
        entry.patient_id, entry.user_hsa_id, entry.care_unit, entry.care_giver, entry.activity,
        entry.basis, entry.outcome, entry.purpose, list(entry.categories),
        base64.b64encode(entry.payload).decode("ascii"), entry.subject,
    ]
    return _CANONICAL_JSON.encode(fields).encode("ascii")


def link_hash(prev_hash: bytes, chain: str, seq: int, recorded_at: datetime, entry: Entry) -> bytes:
    return hashlib.sha256(prev_hash + canonical(chain, seq, recorded_at, entry)).digest()


def link(
    chain: str, head_seq: int, head_hash: bytes, entries: Iterable[Entry], recorded_at: datetime
) -> list[Record]:
    """Append ``entries`` in order after the chain head (seq, hash); returns the linked records."""
    records: list[Record] = []
    seq, prev = head_seq, head_hash
    for entry in entries:
        seq += 1
        digest = link_hash(prev, chain, seq, recorded_at, entry)
        records.append(Record(chain, seq, recorded_at, entry, prev, digest))
        prev = digest
    return records


def first_of_each_id(entries: Sequence[Entry]) -> list[Entry]:
    """The entries in order with later repeats of an event id dropped (a batch may hold both)."""
    seen: set[str] = set()
    unique: list[Entry] = []
    for entry in entries:
        if entry.event_id not in seen:
            seen.add(entry.event_id)
            unique.append(entry)
    return unique


# A search (api_statistics.py): an access record of an overview read, allowed or not; answered
# when something was shown. Plain ints: the record's columns hold the enums' numbers.
SEARCH_ACTIVITIES = frozenset({int(ActivityType.READ), int(ActivityType.EMERGENCY_OPEN)})
ANSWERED_OUTCOMES = frozenset({int(AccessOutcome.ALLOWED), int(AccessOutcome.PARTIAL)})


@dataclass(frozen=True, slots=True, order=True)
class SearchKey:
    """One row of the monthly search rollup: the month (UTC) and the reader's organisation."""

    month: date  # first day of the month
    care_giver: str
    care_unit: str


def search_counts(records: Iterable[Record]) -> dict[SearchKey, tuple[int, int]]:
    """(searches, answered) per month and reader organisation of the records, ordered by key."""
    counts: dict[SearchKey, list[int]] = {}
    for record in records:
        e = record.entry
        if e.kind is not Kind.ACCESS or e.activity not in SEARCH_ACTIVITIES:
            continue
        t = e.event_time if e.event_time.tzinfo is UTC else e.event_time.astimezone(UTC)
        found = counts.setdefault(SearchKey(date(t.year, t.month, 1), e.care_giver, e.care_unit), [0, 0])
        found[0] += 1
        found[1] += e.outcome in ANSWERED_OUTCOMES
    return {key: (n, answered) for key, (n, answered) in sorted(counts.items())}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _event_time(stamp: Timestamp) -> datetime:
    """The event time in UTC at microsecond precision (what PostgreSQL stores)."""
    return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


def access_entry(event: AccessEvent, raw: bytes | None = None) -> Entry:
    """The entry of an access event; ``raw`` is the record as received (kept byte for byte)."""
    actor = event.actor
    return Entry(
        kind=Kind.ACCESS,
        event_id=event.meta.event_id,
        event_time=_event_time(event.meta.event_time),
        patient_id=event.patient_id,
        user_hsa_id=actor.user_hsa_id,
        care_unit=actor.care_unit_hsa_id,
        care_giver=actor.care_giver_hsa_id,
        activity=int(event.activity),
        basis=int(event.basis),
        outcome=int(event.outcome),
        purpose=actor.purpose,
        categories=tuple(event.categories),
        payload=raw if raw is not None else event.SerializeToString(deterministic=True),
        protected_identity=event.protected_identity,
        reader_name=actor.name,
    )


def consent_entry(event: ConsentEvent, raw: bytes | None = None) -> Entry:
    actor = event.actor
    return Entry(
        kind=Kind.CONSENT,
        event_id=event.meta.event_id,
        event_time=_event_time(event.meta.event_time),
        patient_id=event.patient_id,
        user_hsa_id=actor.user_hsa_id,
        care_unit=event.care_unit_hsa_id,
        care_giver=event.care_giver_hsa_id,
        activity=int(event.subject),
        basis=0,
        outcome=int(event.change),
        purpose=actor.purpose,
        categories=(),
        payload=raw if raw is not None else event.SerializeToString(deterministic=True),
        relation=_relation_change(event),
    )


def _relation_change(event: ConsentEvent) -> RelationChange | None:
    if event.subject != ConsentEvent.PATIENT_RELATION or not event.record_id:
        return None
    if event.change == ConsentEvent.REFUSED:
        return None  # a refused registration or revocation changed nothing
    if event.change != ConsentEvent.REGISTERED:
        return RelationChange(event.record_id, ended=True)
    valid_from = event.valid_from.ToDatetime(tzinfo=UTC) if event.HasField("valid_from") else None
    valid_to = event.valid_to.ToDatetime(tzinfo=UTC) if event.HasField("valid_to") else None
    return RelationChange(event.record_id, ended=False, valid_from=valid_from, valid_to=valid_to)


def with_time(entry: Entry, moment: datetime) -> Entry:
    return replace(entry, event_time=utc_micros(moment))
