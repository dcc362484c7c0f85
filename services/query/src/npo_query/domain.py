"""Aggregation rules with no I/O: producer targets, statuses, the merge and the overall outcome.

A *target* is one producer (logical address) for one information category: the query calls
each target at most once. Every target the index names ends with exactly one status, whether it
was called or not (AGP let routing-filtered producers vanish; we report them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from npo_platform.categories import find_by_code

Json = dict[str, Any]


class Status(StrEnum):
    """Processing status per target, AGP's names plus the two statuses AGP lacked."""

    DATA_FROM_SOURCE = "DataFromSource"
    NO_DATA_SYNCH_FAILED = "NoDataSynchFailed"
    WITHHELD_BY_DECISION = "WithheldByDecision"
    NOT_AUTHORISED_BY_ROUTING = "NotAuthorisedByRouting"


class Cause(StrEnum):
    """Why a target has no data. A failure always has one of the first four, never "unknown"."""

    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    HTTP_STATUS = "http_status"
    INVALID_ANSWER = "invalid_answer"
    NOT_IN_ROUTING = "not_in_routing"


class Outcome(StrEnum):
    ALLOWED = "allowed"
    PARTIAL = "partial"
    DENIED = "denied"


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """One producer for one category, as named by the index."""

    logical_address: str
    category: str  # npo_platform.categories key
    data_controller: str = ""
    source_system: str = ""

    @property
    def id(self) -> str:
        """Stable id of the target in decisions and answers (no patient data in it)."""
        return f"{self.logical_address}/{self.category}/{self.data_controller}"


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """The fields of an engagement the aggregation uses."""

    service_domain: str
    categorization: str
    logical_address: str
    source_system: str
    data_controller: str
    most_recent_content: str = ""


def targets_of(entries: Iterable[IndexEntry], categories: Iterable[str]) -> list[Target]:
    """Distinct targets of the engagements in the asked categories (unknown codes ignored)."""
    wanted = set(categories)
    found: set[Target] = set()
    for entry in entries:
        category = find_by_code(entry.service_domain, entry.categorization)
        if category is not None and category.key in wanted:
            found.add(Target(entry.logical_address, category.key, entry.data_controller,
                             entry.source_system))
    return sorted(found)


@dataclass(frozen=True, slots=True)
class Record:
    """One document a producer returned, with the fields the merge and the access law need.

    ``care_giver`` and ``care_unit`` are where the record was written (RIV-TA: the accountable
    professional's care giver and care unit HSA-ids; empty when the producer did not say);
    ``social_services`` marks information documented under SoL, which is never released.
    """

    document_id: str
    source_system: str
    author_time: str  # yyyyMMddHHmmss
    category: str
    logical_address: str
    document: Json = field(compare=False, hash=False)
    care_giver: str = ""
    care_unit: str = ""
    social_services: bool = False

    @property
    def identity(self) -> tuple[str, str]:
        return (self.document_id, self.source_system)


@dataclass(frozen=True, slots=True)
class Withheld:
    """How many of a producer's records the access law withheld, for one reason, care giver
    and care unit (for the access event; never shown to the reader)."""

    reason: str
    care_giver: str
    care_unit: str
    count: int


@dataclass(frozen=True, slots=True)
class TargetResult:
    """What became of one target. ``records`` are those released; ``withheld`` counts the
    producer's others, ``protected_removed`` the records protected fields were taken out of."""

    target: Target
    status: Status
    cause: str | None = None
    http_status: int | None = None
    records: tuple[Record, ...] = ()
    duration_ms: float = 0.0
    pages: int = 0
    withheld: tuple[Withheld, ...] = ()
    protected_removed: int = 0

    @property
    def failed(self) -> bool:
        return self.status is not Status.DATA_FROM_SOURCE


def merge(results: Iterable[TargetResult]) -> list[Record]:
    """All records, newest first, each (documentId, source system) once.

    Ties are broken by the identity, and of duplicates the copy from the first producer (by
    logical address) is kept, so the answer is the same whatever order producers answered in.
    """
    unique: dict[tuple[str, str], Record] = {}
    for result in results:
        for record in result.records:
            kept = unique.get(record.identity)
            if kept is None or _where(record) < _where(kept):
                unique[record.identity] = record  # the same copy whatever the answer order
    return sorted(unique.values(), key=lambda r: (_desc(r.author_time), r.identity))


def _where(record: Record) -> tuple[str, str]:
    return (record.logical_address, record.category)


def _desc(time: str) -> str:
    # yyyyMMddHHmmss is digits only: map each digit d to 9-d to sort descending as text.
    return time.translate(_INVERT)


_INVERT = str.maketrans("0123456789", "9876543210")


def outcome_of(decision_denied: bool, results: Sequence[TargetResult]) -> Outcome:
    """Denied when the decision denied; partial when any target has no data; else allowed."""
    if decision_denied:
        return Outcome.DENIED
    return Outcome.PARTIAL if any(r.failed for r in results) else Outcome.ALLOWED


def not_routed(targets: Iterable[Target]) -> list[TargetResult]:
    return [TargetResult(t, Status.NOT_AUTHORISED_BY_ROUTING, Cause.NOT_IN_ROUTING) for t in targets]


def withheld(targets: Iterable[tuple[Target, str]]) -> list[TargetResult]:
    return [TargetResult(t, Status.WITHHELD_BY_DECISION, reason) for t, reason in targets]
