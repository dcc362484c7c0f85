"""The overview's rules, no I/O: targets and their statuses, the access decision as this
service acts on it, the access law per record (design.md §5.5), the merge and the outcome.

A *target* is one producer (logical address) for one information category: the query calls
each target at most once. Every target the index names ends with exactly one status, whether it
was called or not (AGP let routing-filtered producers vanish; we report them).

The consent service decides per engagement (producer and care giver); a producer's logical
address often serves many care units, so what a block or inner secrecy closes is settled here,
record by record, from the record's care giver and care unit. The record policy comes with the
decision, once per decision, as sets: judging a record is a few set lookups.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from npo_platform.categories import find_by_code

Json = dict[str, Any]


# Reason codes this service gives (the consent service's own pass through as they come).
BLOCKED = "blocked"
UNIT_UNKNOWN = "unit_unknown"  # no care unit on a record of a care giver with unit-level blocks
SOCIAL_SERVICES = "social_services"
NOT_DECIDED = "not_decided"
NO_RELATION = "no_relation"
DECISION_UNAVAILABLE = "decision_unavailable"
PRODUCER_FAILED = "producer_failed"
# Withheld because of a block: the reader may learn that such information exists, never where.
BLOCK_REASONS = frozenset({BLOCKED, UNIT_UNKNOWN})


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


@dataclass(frozen=True, slots=True)
class RecordPolicy:
    """What the decision leaves open record by record (the consent service's RecordPolicy).

    A record of ``own_care_giver`` is withheld for ``own_closed`` unless that is None, any other
    care giver's for ``others_closed``; a record of a care giver in ``closed_care_givers`` or of
    a unit in ``closed_care_units`` is blocked, and a record without a unit of a care giver in
    ``unit_blocked_care_givers`` too (it cannot be told apart from the blocked unit's).
    The default withholds everything (fail closed).
    """

    own_care_giver: str = ""
    own_closed: str | None = NOT_DECIDED
    others_closed: str | None = NOT_DECIDED
    closed_care_givers: frozenset[str] = frozenset()
    closed_care_units: frozenset[str] = frozenset()
    unit_blocked_care_givers: frozenset[str] = frozenset()


CLOSED = RecordPolicy()


@dataclass(frozen=True, slots=True)
class EngagementVerdict:
    allowed: bool
    basis: str
    reason_code: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    """The consent service's access decision, as this service acts on it."""

    outcome: str  # allowed | partial | denied
    basis: str
    reason_code: str | None
    blocked_information_exists: bool = False
    protected_identity: bool = False
    protected_fields: tuple[str, ...] = ()
    verdicts: dict[str, EngagementVerdict] = field(default_factory=dict)
    emergency_reason: str = ""  # the registered reason, when an emergency access opens anything
    policy: RecordPolicy = CLOSED  # what is open record by record; by default nothing

    @property
    def denied(self) -> bool:
        return self.outcome == "denied"

    def allows(self, target: Target) -> EngagementVerdict:
        """Fail closed: a target the decision does not mention is withheld."""
        return self.verdicts.get(target.id, EngagementVerdict(False, "none", "not_decided"))


def unavailable(reason: str) -> Decision:
    """What the query acts on when no decision can be had: deny everything (fail closed)."""
    return Decision("denied", "none", reason)


def withheld_reason(policy: RecordPolicy, record: Record, data_controller: str) -> str | None:
    """Why ``record`` may not leave, or None. A record that names no care giver is its
    engagement's data controller's (the organisation responsible for the information)."""
    if record.social_services:
        return SOCIAL_SERVICES  # whatever the consent or emergency access
    giver = record.care_giver or data_controller
    if giver in policy.closed_care_givers:
        return BLOCKED
    unit = record.care_unit
    if unit:
        if unit in policy.closed_care_units:
            return BLOCKED
    elif giver in policy.unit_blocked_care_givers:
        return UNIT_UNKNOWN
    return policy.own_closed if giver == policy.own_care_giver else policy.others_closed


def apply_law(policy: RecordPolicy, result: TargetResult,
              protected_fields: Collection[str] = ()) -> TargetResult:
    """``result`` with only the records the law releases, the others counted per reason, care
    giver and unit; from a protected patient's records every protected field is removed."""
    if not result.records:
        return result
    kept: list[Record] = []
    counts: dict[tuple[str, str, str], int] = {}
    controller = result.target.data_controller
    for record in result.records:
        reason = withheld_reason(policy, record, controller)
        if reason is None:
            kept.append(record)
        else:
            key = (reason, record.care_giver or controller, record.care_unit)
            counts[key] = counts.get(key, 0) + 1
    removed = 0
    if protected_fields:
        kept, removed = _without_fields(kept, frozenset(f.lower() for f in protected_fields))
    if not counts and not removed:
        return result
    withheld = tuple(Withheld(*key, n) for key, n in sorted(counts.items()))
    return replace(result, records=tuple(kept), withheld=withheld, protected_removed=removed)


def withheld_by_block(result: TargetResult) -> bool:
    """Whether a block withholds this target or any of its records (the reader learns only that)."""
    if result.status is Status.WITHHELD_BY_DECISION:
        return result.cause == BLOCKED
    return any(w.reason in BLOCK_REASONS for w in result.withheld)


def hidden_by_block(result: TargetResult) -> bool:
    """Whether the reader must not learn of this target at all: a block withholds it, or every
    record it answered (listing it would tell where the blocked information is)."""
    return withheld_by_block(result) and not result.records


def record_reasons(results: Iterable[TargetResult]) -> set[str]:
    """The reasons records were withheld for, over ``results``."""
    return {w.reason for r in results for w in r.withheld}


def _without_fields(records: list[Record], fields: frozenset[str]) -> tuple[list[Record], int]:
    out, removed = [], 0
    for record in records:
        document, changed = _strip(record.document, fields)
        if changed:
            removed += 1
            record = replace(record, document=document)
        out.append(record)
    return out, removed


def _strip(value: Any, fields: frozenset[str]) -> tuple[Any, bool]:
    """``value`` without any key named in ``fields`` (any case), at any depth."""
    if isinstance(value, dict):
        changed = False
        out = {}
        for key, item in value.items():
            if isinstance(key, str) and key.lower() in fields:
                changed = True
                continue
            out[key], inner = _strip(item, fields)
            changed = changed or inner
        return (out, True) if changed else (value, False)
    if isinstance(value, list):
        items = [_strip(item, fields) for item in value]
        if any(inner for _, inner in items):
            return [item for item, _ in items], True
        return value, False
    return value, False


@dataclass(frozen=True, slots=True)
class Told:
    """What the reader may be told of the targets: each one no block hides, in order, and
    whether a block hides any (then only *that* blocked information exists, never where)."""

    results: tuple[TargetResult, ...]
    blocked: bool


def told_of(results: Iterable[TargetResult]) -> Told:
    listed = list(results)
    told = tuple(r for r in listed if not hidden_by_block(r))
    return Told(told, len(told) < len(listed))


NOTHING_TOLD = Told((), False)


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


def outcome_of_read(results: Sequence[TargetResult]) -> Outcome:
    """Partial also when the law withheld some records (social-services ones aside: the reader
    is never told of those)."""
    outcome = outcome_of(False, results)
    if outcome is Outcome.ALLOWED and record_reasons(results) - {SOCIAL_SERVICES}:
        return Outcome.PARTIAL
    return outcome


def blocked_information_exists(decision: Decision, results: Iterable[TargetResult]) -> bool:
    return decision.blocked_information_exists or any(withheld_by_block(r) for r in results)


def reason_of(decision: Decision, results: Sequence[TargetResult]) -> str | None:
    """The most telling reason why not everything was returned, or None."""
    statuses = {r.status for r in results}
    if Status.WITHHELD_BY_DECISION in statuses:
        return decision.reason_code or next(
            r.cause for r in results if r.status is Status.WITHHELD_BY_DECISION
        )
    by_law = record_reasons(results) - {SOCIAL_SERVICES}
    if by_law:
        return BLOCKED if by_law & BLOCK_REASONS else min(by_law)
    if Status.NOT_AUTHORISED_BY_ROUTING in statuses:
        return Cause.NOT_IN_ROUTING.value
    return PRODUCER_FAILED if Status.NO_DATA_SYNCH_FAILED in statuses else None


def not_routed(targets: Iterable[Target]) -> list[TargetResult]:
    return [TargetResult(t, Status.NOT_AUTHORISED_BY_ROUTING, Cause.NOT_IN_ROUTING) for t in targets]


def withheld(targets: Iterable[tuple[Target, str]]) -> list[TargetResult]:
    return [TargetResult(t, Status.WITHHELD_BY_DECISION, reason) for t, reason in targets]
