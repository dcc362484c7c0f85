"""The access law per record (design.md §5.5), no I/O: the decision's record policy applied to
each record a producer returned, before the merge, and protected fields taken out.

The consent service decides per engagement (producer and care giver); a producer's logical
address often serves many care units, so what a block or inner secrecy closes is settled here,
record by record, from the record's care giver and care unit. The policy comes with the
decision, once per decision, as sets: judging a record is a few set lookups.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from typing import Any

from .domain import Record, Status, TargetResult, Withheld

BLOCKED = "blocked"
UNIT_UNKNOWN = "unit_unknown"  # no care unit on a record of a care giver with unit-level blocks
SOCIAL_SERVICES = "social_services"
NOT_DECIDED = "not_decided"
# Withheld because of a block: the reader may learn that such information exists, never where.
BLOCK_REASONS = frozenset({BLOCKED, UNIT_UNKNOWN})


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
