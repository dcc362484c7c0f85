"""Ingest: a batch of EngagementUpdate records → validation → one store transaction → IndexChanges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from npo_platform.contracts import EngagementUpdate
from npo_platform.kafka import PermanentError, Received
from npo_producer.validation import InvalidUpdate, Rules, transactions_of

from .changes import OutboxRelay, outbox_messages
from .store import IncomingEvent, IndexStore

INVALID_IN_BATCH = "batch.has_invalid"


@dataclass
class IngestHandler:
    """The consumer's batch handler. Idempotent: an event delivered again changes nothing (the
    freshness rule: none of its transactions is newer than what the index holds).

    One invalid message in a batch makes the handler refuse the batch; the platform consumer
    then hands the records over one by one, so only the invalid message is dead-lettered (with
    its EI codes as the reason) and the partition carries on.
    """

    store: IndexStore
    relay: OutboxRelay
    rules: Rules

    async def __call__(self, batch: Sequence[Received[EngagementUpdate]]) -> None:
        events = [self._validated(received, alone=len(batch) == 1) for received in batch]
        await self.relay.enqueue(await self.store.apply_batch(events, outbox_messages))

    def _validated(self, received: Received[EngagementUpdate], *, alone: bool) -> IncomingEvent:
        received_at = datetime.fromtimestamp(received.record.timestamp / 1000, UTC)
        try:
            transactions = transactions_of(received.event, self.rules, received_at=received_at)
        except InvalidUpdate as error:
            if alone:
                raise PermanentError(",".join(error.codes), str(error)) from None
            raise PermanentError(INVALID_IN_BATCH, "isolating the invalid message") from None
        return IncomingEvent(received.event.meta.event_id, transactions)
