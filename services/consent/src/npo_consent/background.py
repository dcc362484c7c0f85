"""Background work of a replica: the outbox relay and the periodic expiry sweep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from npo_platform.contracts import ConsentEvent
from npo_platform.kafka import EventPublisher
from npo_platform.topics import Topic

from .handlers import ConsentService
from .store import ConsentStore

log = logging.getLogger(__name__)


class OutboxRelay:
    """Publishes the outbox: at once when woken after a change, and every ``interval_s`` anyway.

    A row is marked published only after the broker acknowledged it (acks=all), so a crash in
    between publishes it again: at least once, in outbox order; consumers dedupe by event id.
    """

    def __init__(self, store: ConsentStore, publisher: EventPublisher, topic: Topic,
                 interval_s: float = 1.0) -> None:
        self._store = store
        self._publisher = publisher
        self._topic = topic
        self._interval_s = interval_s
        self._wake = asyncio.Event()
        self.published = 0

    def wake(self) -> None:
        self._wake.set()

    async def flush(self) -> int:
        """Publish everything pending now; returns how many events went out."""
        total = 0
        while sent := await self._store.relay(self._publish):
            total += sent
        self.published += total
        return total

    async def _publish(self, events: Sequence[ConsentEvent]) -> None:
        futures = [await self._publisher.send(self._topic, e.patient_id, e) for e in events]
        await asyncio.gather(*futures)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()  # before flushing: a change during the flush wakes the next round
            try:
                await self.flush()
            except Exception:  # the rows stay pending; the next round retries them
                log.exception("outbox relay round failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)


async def expire_periodically(service: ConsentService, stop: asyncio.Event, interval_s: float) -> None:
    """Announce expired consents, lifts and relations (and other windows) every ``interval_s``."""
    while not stop.is_set():
        try:
            while await service.expire():
                pass
        except Exception:
            log.exception("expiry sweep failed; retrying next round")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
