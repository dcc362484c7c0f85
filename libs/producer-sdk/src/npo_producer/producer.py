"""Producer SDK: validate, split per patient, batch and publish engagement updates with confirmation.

Keying (design.md §4): every message holds the transactions of ONE patient and is keyed by that
patient's id, so one patient's updates stay in one partition, in order. A producer's call with
many patients becomes one message per patient (chunks of at most 1000 transactions). The index
does not rely on this order for correctness (its freshness rule is order-independent for the
stored content), but per-patient keying also makes replays deterministic per record.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

from npo_engagement import MAX_TRANSACTIONS, Rules, transactions_of
from npo_platform.contracts import EngagementUpdate
from npo_platform.contracts.events_pb2 import EngagementTransaction
from npo_platform.events import new_meta
from npo_platform.kafka import BatchPublisher, EventPublisher, serialized
from npo_platform.topics import ENGAGEMENT_UPDATES, Topic

__all__ = ["EngagementProducer", "patient_key", "split_per_patient"]


def split_per_patient(
    producer: str,
    transactions: Sequence[EngagementTransaction],
    *,
    at: datetime | None = None,
    max_per_message: int = MAX_TRANSACTIONS,
) -> list[EngagementUpdate]:
    """One message per patient (and per ``max_per_message`` transactions), in first-seen order."""
    by_patient: dict[str, list[EngagementTransaction]] = {}
    for tx in transactions:
        by_patient.setdefault(tx.engagement.registered_resident_identification, []).append(tx)
    updates = []
    for group in by_patient.values():
        for start in range(0, len(group), max_per_message):
            chunk = group[start : start + max_per_message]
            updates.append(
                EngagementUpdate(meta=new_meta(producer, at=at), producer=producer, transactions=chunk)
            )
    return updates


class EngagementProducer:
    """Publishes a producer system's engagement transactions; returns once the broker has them all.

    With a BatchPublisher (a service publishing whole requests, as the index does for Update),
    a request's messages go out as one record batch per partition under one span: sending them
    one record at a time, a span each, cost more than everything else the request does.
    """

    def __init__(
        self,
        publisher: EventPublisher | BatchPublisher,
        source_system: str,
        *,
        topic: Topic = ENGAGEMENT_UPDATES,
        rules: Rules | None = None,
    ) -> None:
        self._publisher = publisher
        self.source_system = source_system
        self._topic = topic
        self._rules = rules or Rules()

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, bootstrap_servers: str, source_system: str, *, topic: Topic = ENGAGEMENT_UPDATES
    ) -> AsyncIterator[EngagementProducer]:
        publisher = EventPublisher(bootstrap_servers, client_id=source_system, linger_ms=10)
        await publisher.start()
        try:
            yield cls(publisher, source_system, topic=topic)
        finally:
            await publisher.stop()

    def prepare(
        self, transactions: Sequence[EngagementTransaction], *, at: datetime | None = None
    ) -> list[EngagementUpdate]:
        """The messages to send; raises InvalidUpdate (with EI codes) before anything is sent."""
        updates = split_per_patient(self.source_system, transactions, at=at)
        for update in updates:
            transactions_of(update, self._rules)
        return updates

    async def publish(
        self, transactions: Sequence[EngagementTransaction], *, at: datetime | None = None
    ) -> list[str]:
        """Validate, send every message, wait for every acknowledgement; returns the event ids."""
        return await self.send(self.prepare(transactions, at=at))

    async def send(self, updates: Sequence[EngagementUpdate]) -> list[str]:
        """Send prepared messages concurrently, keyed by patient; confirmed when this returns."""
        if isinstance(self._publisher, BatchPublisher):
            await self._publisher.publish(self._topic, [serialized(u, patient_key(u)) for u in updates])
            return [u.meta.event_id for u in updates]
        futures = [
            await self._publisher.send(self._topic, patient_key(u), u)
            for u in updates
        ]
        await asyncio.gather(*futures)
        return [u.meta.event_id for u in updates]


def patient_key(update: EngagementUpdate) -> str:
    """The message key of ``update``: the patient of every one of its transactions
    (``split_per_patient``), so one patient's updates keep their order on one partition."""
    return update.transactions[0].engagement.registered_resident_identification
