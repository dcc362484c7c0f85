"""Background work of a replica: the outbox as the platform's relay reads it, the expiry sweep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from npo_platform.contracts import ConsentEvent
from npo_platform.kafka import serialized
from npo_platform.outbox import Publish

from .handlers import ConsentService
from .store import ConsentStore

log = logging.getLogger(__name__)


class ConsentOutbox:
    """The store's outbox for npo_platform.outbox.OutboxRelay: events keyed by patient id."""

    def __init__(self, store: ConsentStore) -> None:
        self._store = store

    async def relay(self, publish: Publish, limit: int = 500) -> int:
        async def publish_events(events: Sequence[ConsentEvent]) -> None:
            await publish([serialized(e, e.patient_id) for e in events])

        return await self._store.relay(publish_events, limit)


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
