"""Where the log lives: the ports (store_pg*.py and store_memory.py adapt them) and their values.

``append`` is the only write: under the chain head's lock it drops event ids already stored,
links the new entries into the chain, evaluates the per-record sample-check rules, writes
records, flags and a signed checkpoint of the new head, all in one transaction. ``sweep`` runs
the windowed rules over what every writer stored since the last sweep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .domain import Entry, Kind, Record, SearchKey
from .domain_rules import REFUSED_ATTEMPTS_PER_HOUR, Flag, Person
from .signing import Checkpoint

if TYPE_CHECKING:
    from .fhir_search_params import AuditEventSearch


@dataclass(frozen=True)
class Appended:
    """What one append stored: the chain range written and the flags raised."""

    chain: str
    stored: tuple[Record, ...] = ()
    flags: tuple[Flag, ...] = ()
    duplicates: int = 0


class AuditStore(Protocol):
    """The write side and the chains; every adapter passes tests/test_audit_store_contract.py."""

    async def append(self, chain: str, entries: Sequence[Entry]) -> Appended: ...

    async def count(self, kind: Kind) -> int: ...

    async def chains(self) -> list[str]: ...

    def records(self, chain: str) -> AsyncIterator[Record]: ...

    async def checkpoints(self, chain: str) -> list[Checkpoint]: ...

    async def flags(self) -> list[Flag]: ...

    async def register_persons(self, persons: dict[str, Person]) -> None: ...

    async def sweep(self, limit: int, refusals: int = REFUSED_ATTEMPTS_PER_HOUR) -> list[Flag]: ...

    async def search_counts(self) -> dict[SearchKey, tuple[int, int]]: ...


@dataclass(frozen=True)
class SearchFilter:
    """Exact filters (all optional) over access records; newest first, keyset-paged."""

    patient_id: str | None = None
    user_hsa_id: str | None = None
    care_unit: str | None = None
    care_giver: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None
    basis: int | None = None
    outcome: int | None = None
    rule: str | None = None
    kind: str = "access"
    event_id: str | None = None


@dataclass(frozen=True)
class Cursor:
    """Position after the last row of a page: (event time, event id), descending."""

    event_time: datetime
    event_id: str


@dataclass(frozen=True)
class FlagRow:
    flag_id: int
    rule: str
    event_id: str
    event_time: datetime
    patient_id: str
    user_hsa_id: str
    care_unit: str
    detail: str
    reviewed: bool


class AuditSearch(Protocol):
    """The read side: compliance search, flags, the patient's extract, the statistics and the
    FHIR search (store_pg_search.py, only PostgreSQL adapts it)."""

    async def search(self, f: SearchFilter, limit: int, cursor: Cursor | None = None) -> list[Record]: ...

    async def flags_of(self, event_ids: list[str]) -> dict[str, list[str]]: ...

    async def extract(self, patient_id: str, limit: int, cursor: Cursor | None) -> list[Record]: ...

    async def flags(self, rule: str | None, time_from: datetime | None, time_to: datetime | None,
                    limit: int, after_id: int = 0, reviewed: bool | None = None) -> list[FlagRow]: ...

    async def find(self, event_id: str) -> Record | None: ...

    async def chain_range(self, chain: str, after_seq: int, to_seq: int) -> list[Record]: ...

    async def searches(self, start: date, end: date,
                       reader: Literal["care_giver", "care_unit"]) -> list[Any]:
        """The operator's search statistics: the monthly rollup over [start, end)."""
        ...

    async def audit_events(self, search: AuditEventSearch, position: Position) -> Found:
        """One page of the FHIR AuditEvent search from ``position``."""
        ...


@dataclass(frozen=True)
class Position:
    """Where a page starts: after ``cursor`` going back in time, or (``backward``) the page just
    newer than it; no cursor: the newest records."""

    cursor: Cursor | None = None
    backward: bool = False


@dataclass(frozen=True)
class Found:
    records: list[Record]  # newest first
    more: bool  # another page follows in the direction read


def cursor_of(record: Record) -> Cursor:
    return Cursor(record.entry.event_time, record.entry.event_id)


@dataclass(frozen=True)
class Live:
    record: Record
    rules: tuple[str, ...]


class LiveRecords(Protocol):
    """New records as writers commit them (store_pg_live.py listens for them)."""

    def subscribe(self, keepalive_s: float = 15.0) -> AsyncIterator[Live | None]: ...


@dataclass(frozen=True)
class LogRead:
    """One answered read of the log: who, what (``action``, the request as given) and how many
    records it returned (``None``: a stream, open-ended). ``read_id`` and ``read_at`` are the
    store's."""

    user_hsa_id: str
    care_unit: str
    care_giver: str
    action: str
    filter: dict[str, Any]
    returned: int | None
    read_id: int = 0
    read_at: datetime | None = None


class ReadNotRecorded(Exception):
    """The read could not be committed, so it must not be answered."""


class ReadLog(Protocol):
    """Who read the log (store_pg_reads.py): append-only, newest first, keyset-paged by id."""

    async def record(self, read: LogRead) -> None:
        """Commit ``read`` before its answer leaves; raises ReadNotRecorded when it cannot."""
        ...

    async def search(self, user_hsa_id: str | None, time_from: datetime | None,
                     time_to: datetime | None, limit: int, before_id: int | None) -> list[LogRead]: ...
