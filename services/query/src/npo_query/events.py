"""Kafka handlers: consent events drop cached decisions, index changes reach the push hub.

Both consumers run in one group per replica (main.py): every replica must see every consent
event (its own decision cache) and every index change (its own subscriptions). Both handlers
are idempotent: a replayed event drops nothing more and notifies no one twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from npo_platform.contracts import ConsentEvent, IndexChanges
from npo_platform.kafka import BatchHandler, Received

from .cache import DecisionCache
from .push import Hub


def invalidating(cache: DecisionCache) -> BatchHandler[ConsentEvent]:
    """A consent-event batch handler dropping cached decisions of the events' patients (a
    refused command changed nothing: its event leaves them)."""

    async def handle(batch: Sequence[Received[ConsentEvent]]) -> None:
        for received in batch:
            if received.event.change != ConsentEvent.REFUSED:
                cache.invalidate(received.event.patient_id)

    return handle


def pushing(hub: Hub) -> BatchHandler[IndexChanges]:
    """An index-changes batch handler handing every change to the hub's subscriptions."""

    async def handle(batch: Sequence[Received[IndexChanges]]) -> None:
        for received in batch:
            for change in received.event.changes:
                hub.offer(change)

    return handle
