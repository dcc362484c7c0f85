"""Engagement index rules (design.md §5.1): the nine-field identity and the freshness rule. No I/O.

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

from datetime import datetime
from enum import StrEnum

import msgspec
from msgspec.structs import replace

from npo_engagement import NOT_APPLICABLE, Identity, Transaction, Version, normalise_optional

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
