"""Where the index lives: the IndexStore port (store_pg.py and store_memory.py adapt it).

``apply_batch`` is the unit of consistency: in ONE transaction it folds the events'
transactions over the stored records with the domain's freshness rule, writes the records,
adjusts the coverage counts and queues the resulting change records in the outbox. The
rule alone makes it idempotent: an event delivered again changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from npo_platform.kafka import SerializedEvent
from npo_platform.outbox import Publish

from .domain import Applied, CoverageCount, Record, Transaction


class IncomingEvent(msgspec.Struct, frozen=True):
    """One validated EngagementUpdate: its id and transactions, in message order."""

    event_id: str
    transactions: Sequence[Transaction]


class OutboxBatch(msgspec.Struct, frozen=True):
    """The change records one ingest batch queued, in order; removed together once published."""

    seq: int
    messages: list[SerializedEvent]


OutboxBuilder = Callable[[Sequence[Applied]], list[SerializedEvent]]


@dataclass(frozen=True)
class FindQuery:
    """FindContent: the patient and one or more service domains required, other key fields
    exact, content on or after. Answers are in (service domain, key) order; ``after`` is the
    last of the previous page, so a page is one range scan of the primary key."""

    patient: str
    service_domains: tuple[str, ...]
    categorization: str | None = None
    logical_address: str | None = None
    business_object_instance_identifier: str | None = None
    clinical_process_interest_id: str | None = None
    source_system: str | None = None
    data_controller: str | None = None
    owner: str | None = None
    most_recent_content_from: str | None = None  # yyyyMMddHHmmss, "on or after"
    after: tuple[str, bytes] | None = None  # paging cursor: (service domain, key) of the last
    limit: int = 100

    def exact_filters(self) -> dict[str, str]:
        names = (
            "categorization", "logical_address", "business_object_instance_identifier",
            "clinical_process_interest_id", "source_system", "data_controller", "owner",
        )
        return {name: value for name in names if (value := getattr(self, name)) is not None}

    def matches(self, record: Record) -> bool:
        identity = record.identity
        if record.deleted or identity.patient != self.patient:
            return False
        if identity.service_domain not in self.service_domains:
            return False
        if any(getattr(identity, n) != v for n, v in self.exact_filters().items()):
            return False
        since = self.most_recent_content_from
        if since is not None and record.most_recent_content < since:
            return False
        return self.after is None or (identity.service_domain, record.key) > self.after


class IndexStore(Protocol):
    """Where the index lives; every implementation passes tests/test_store_contract.py."""

    async def apply_batch(
        self, events: Sequence[IncomingEvent], outbox: OutboxBuilder
    ) -> OutboxBatch | None:
        """Apply the events atomically; returns the outbox batch queued (None: no change).

        Idempotent without remembering event ids: an event delivered again changes nothing,
        because none of its transactions is newer than what the index holds (the freshness
        rule), so it yields no row, no change event and no count.
        """
        ...

    async def find(self, query: FindQuery) -> list[Record]: ...

    async def coverage(self) -> list[CoverageCount]: ...

    async def pending_outbox(self, limit: int = 100) -> list[OutboxBatch]: ...

    async def remove_outbox(self, seqs: Sequence[int]) -> None: ...

    async def relay(self, publish: Publish, limit: int = 100) -> int:
        """npo_platform.outbox.Outbox: ``relay_outbox`` over the two methods above."""
        ...

    async def records(self) -> list[Record]:
        """Every row, tombstones included, in key order (tests and replay comparisons)."""
        ...


async def relay_outbox(store: IndexStore, publish: Publish, limit: int) -> int:
    """The oldest ``limit`` pending batches, each published and then removed; how many events."""
    sent = 0
    for batch in await store.pending_outbox(limit):
        await publish(batch.messages)
        await store.remove_outbox([batch.seq])
        sent += len(batch.messages)
    return sent


def first_occurrences(events: Sequence[IncomingEvent]) -> list[IncomingEvent]:
    """The events of a batch without repeats of the same id (a duplicate in one batch)."""
    seen: set[str] = set()
    unique = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            unique.append(event)
    return unique
