"""Ingest: a batch of EngagementUpdate records → validation → one store transaction → IndexChanges."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from npo_engagement import InvalidUpdate, Rules, transactions_of
from npo_platform.contracts import EngagementUpdate
from npo_platform.kafka import PermanentError, Received
from npo_platform.outbox import OutboxRelay

from .changes import outbox_messages
from .store import IncomingEvent, IndexStore

INVALID_IN_BATCH = "batch.has_invalid"
_LOG_APPEND_TIME = 1  # a record's timestamp_type when the broker stamped it on append
log = logging.getLogger(__name__)


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
    _told_create_time: bool = field(default=False, init=False)

    async def __call__(self, batch: Sequence[Received[EngagementUpdate]]) -> None:
        if not self._told_create_time and batch and batch[0].record.timestamp_type != _LOG_APPEND_TIME:
            self._told_create_time = True
            log.warning(
                "the updates topic %s stamps records with the producer's time (CreateTime): EI004's"
                " future check trusts the producer's clock; set message.timestamp.type=LogAppendTime",
                batch[0].record.topic,
            )
        events = [self._validated(received, alone=len(batch) == 1) for received in batch]
        queued = await self.store.apply_batch(events, outbox_messages)
        if queued is not None:
            await self.relay.hand_over(queued.messages, partial(self.store.remove_outbox, [queued.seq]))

    def _validated(self, received: Received[EngagementUpdate], *, alone: bool) -> IncomingEvent:
        # The broker's append time (the topic is LogAppendTime): in the log, so replays decide the same.
        received_at = datetime.fromtimestamp(received.record.timestamp / 1000, UTC)
        try:
            transactions = transactions_of(received.event, self.rules, received_at=received_at)
        except InvalidUpdate as error:
            if alone:
                raise PermanentError(",".join(error.codes), str(error)) from None
            raise PermanentError(INVALID_IN_BATCH, "isolating the invalid message") from None
        return IncomingEvent(received.event.meta.event_id, transactions)
