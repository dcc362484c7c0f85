"""Engagement index rules (design.md §5.1, §5.3): the freshness rule over the nine-field identity,
and the coverage statistics (per data controller, which categories it publishes). No I/O.

Freshness: every transaction carries a *version* ``(event_time, most_recent_content, event_id)``
(the producer's event time first, then the content time, then the event id so that the order is
total). A transaction changes a record only when its version is greater than the stored one; a
delete leaves a *tombstone* with its version, so a late, older update cannot resurrect the record.
This rule is a last-writer-wins register: duplicates and stale notifications are no-ops, and
applying the same transactions in the same order always gives the same rows (replay from offset
0 rebuilds the same index, ``creation_time``/``update_time`` included, since both are taken from
event times, never from the wall clock).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import msgspec
from msgspec.structs import replace

from npo_engagement import NOT_APPLICABLE, Identity, Transaction, Version, normalise_optional
from npo_platform.categories import AVAILABLE_CATEGORIES, find_by_code

__all__ = [
    "NOT_APPLICABLE", "Applied", "Change", "Identity", "Record", "Transaction", "Version",
    "apply", "apply_all", "normalise_optional",
]


class Change(StrEnum):
    """A real change of the index, published to subscribers."""

    CREATED = "created"
    CONTENT_UPDATED = "content_updated"
    DELETED = "deleted"


class Record(msgspec.Struct, frozen=True, gc=False):
    """An engagement as the index stores it; ``deleted`` records are tombstones (never returned).

    Record and Applied are immutable msgspec structs, as npo_engagement's Transaction: built in C for
    every change the ingest makes, and untracked by the garbage collector (no cycles possible).
    """

    key: bytes
    identity: Identity
    most_recent_content: str
    deleted: bool
    version: Version
    creation_time: datetime
    update_time: datetime


class Applied(msgspec.Struct, frozen=True, gc=False):
    """The outcome of one transaction: the record to store (None: nothing to write) and the change."""

    record: Record | None
    change: Change | None
    cause: Transaction


def apply(current: Record | None, tx: Transaction) -> Applied:
    """The freshness rule: a transaction wins only with a greater version than the stored one."""
    if current is not None and not tx.version > current.version:
        return Applied(None, None, tx)  # stale or duplicate: never overwrites newer state
    at = tx.version.event_time
    if tx.delete:
        if current is None:
            tombstone = Record(tx.key, tx.identity, tx.most_recent_content, True, tx.version, at, at)
            return Applied(tombstone, None, tx)
        gone = replace(current, deleted=True, version=tx.version, update_time=at)
        return Applied(gone, None if current.deleted else Change.DELETED, tx)
    if current is None or current.deleted:
        created = Record(tx.key, tx.identity, tx.most_recent_content, False, tx.version, at, at)
        return Applied(created, Change.CREATED, tx)
    updated = replace(
        current, most_recent_content=tx.most_recent_content, version=tx.version, update_time=at
    )
    changed = tx.most_recent_content != current.most_recent_content
    return Applied(updated, Change.CONTENT_UPDATED if changed else None, tx)


def apply_all(
    current: dict[bytes, Record], transactions: list[Transaction]
) -> tuple[dict[bytes, Record], list[Applied]]:
    """Fold transactions in order over ``current``; returns the records to write and the changes."""
    state = dict(current)
    written: dict[bytes, Record] = {}
    changes: list[Applied] = []
    for tx in transactions:
        outcome = apply(state.get(tx.key), tx)
        if outcome.record is not None:
            state[tx.key] = written[tx.key] = outcome.record
        if outcome.change is not None:
            changes.append(outcome)
    return written, changes


@dataclass(frozen=True, slots=True)
class CoverageCount:
    data_controller: str
    service_domain: str
    categorization: str
    live: int


def coverage_deltas(changes: Sequence[Applied]) -> dict[tuple[str, str, str], int]:
    """How many live engagements each (controller, domain, categorization) gains or loses."""
    deltas: dict[tuple[str, str, str], int] = {}
    for applied in changes:
        change = applied.change
        if change is Change.CREATED:
            step = 1
        elif change is Change.DELETED:
            step = -1
        else:
            continue
        identity = applied.cause.identity
        group = (identity.data_controller, identity.service_domain, identity.categorization)
        deltas[group] = deltas.get(group, 0) + step
    return deltas


@dataclass(frozen=True)
class ControllerCoverage:
    data_controller: str
    categories: tuple[int, ...]  # category numbers with at least one live engagement
    engagements: int
    share_available: float  # share of categories 1-11 published, 0..1
    unknown_codes: tuple[str, ...]  # (serviceDomain/categorization) outside the category table


def coverage_report(counts: Iterable[CoverageCount]) -> list[ControllerCoverage]:
    """One entry per data controller with live engagements, sorted by controller."""
    numbers: dict[str, set[int]] = {}
    totals: dict[str, int] = {}
    unknown: dict[str, set[str]] = {}
    for count in counts:
        controller = count.data_controller
        totals[controller] = totals.get(controller, 0) + count.live
        category = find_by_code(count.service_domain, count.categorization)
        if category is None:
            unknown.setdefault(controller, set()).add(f"{count.service_domain}/{count.categorization}")
        else:
            numbers.setdefault(controller, set()).add(category.number)
    available = {c.number for c in AVAILABLE_CATEGORIES}
    return [
        ControllerCoverage(
            controller,
            tuple(sorted(numbers.get(controller, set()))),
            totals[controller],
            len(numbers.get(controller, set()) & available) / len(available),
            tuple(sorted(unknown.get(controller, set()))),
        )
        for controller in sorted(totals)
    ]
