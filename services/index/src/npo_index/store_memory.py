"""The index in dictionaries: the store's contract without a database (unit tests, the
reference model of the fault test)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from npo_platform.outbox import Publish

from .domain import CoverageCount, Record, apply_all, coverage_deltas
from .store import FindQuery, IncomingEvent, OutboxBatch, OutboxBuilder, first_occurrences, relay_outbox


@dataclass
class InMemoryIndexStore:
    """The index in dictionaries: for unit tests and as the reference model of the fault test."""

    rows: dict[bytes, Record] = field(default_factory=dict)
    outbox: dict[int, OutboxBatch] = field(default_factory=dict)
    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    batches: int = 0

    async def apply_batch(
        self, events: Sequence[IncomingEvent], outbox: OutboxBuilder
    ) -> OutboxBatch | None:
        transactions = [tx for event in first_occurrences(events) for tx in event.transactions]
        written, changes = apply_all(self.rows, transactions)
        messages = outbox(changes)
        self.rows.update(written)
        self.counts.update(coverage_deltas(changes))
        if not messages:
            return None
        self.batches += 1
        batch = self.outbox[self.batches] = OutboxBatch(self.batches, messages)
        return batch

    async def find(self, query: FindQuery) -> list[Record]:
        found = sorted((r for r in self.rows.values() if query.matches(r)), key=_find_order)
        return found[: query.limit]

    async def coverage(self) -> list[CoverageCount]:
        return [CoverageCount(*group, live) for group, live in sorted(self.counts.items()) if live > 0]

    async def pending_outbox(self, limit: int = 100) -> list[OutboxBatch]:
        return [self.outbox[seq] for seq in sorted(self.outbox)][:limit]

    async def remove_outbox(self, seqs: Sequence[int]) -> None:
        for seq in seqs:
            self.outbox.pop(seq, None)

    async def relay(self, publish: Publish, limit: int = 100) -> int:
        return await relay_outbox(self, publish, limit)

    async def records(self) -> list[Record]:
        return [self.rows[key] for key in sorted(self.rows)]


def _find_order(record: Record) -> tuple[str, bytes]:
    return record.identity.service_domain, record.key
