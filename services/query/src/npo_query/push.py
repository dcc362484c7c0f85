"""The push use case: a reader with a current relation subscribes to a patient and hears of new
information, knowing no protocol (api.py streams it as server-sent events).

Index changes reach ``Hub.offer`` (events.py; a per-replica consumer group, so every replica
sees all of them) and are handed to the subscriptions of that patient. Each subscription asks
for the access decision on the changed engagement with its reader's own token before telling
anything: a blocked care giver's new information is not announced. A notice says *that* and
*where* there is new information, never its content (reading it goes through the audited
overview).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from npo_platform.categories import find_by_code
from npo_platform.contracts import IndexChange

from .clients import ConsentClient, Unavailable
from .domain import Target
from .service import NO_DECISION, Denied, Reading, ServiceUnavailable

_CHANGE = {IndexChange.CREATED: "created", IndexChange.CONTENT_UPDATED: "content_updated",
           IndexChange.DELETED: "deleted"}


class Hub:
    """Subscriptions of this replica, by patient; at most ``queue_size`` waiting changes each."""

    def __init__(self, queue_size: int = 100, remember: int = 10_000) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[IndexChange]]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._queue_size, self._remember = queue_size, remember

    def subscribe(self, patient_id: str) -> asyncio.Queue[IndexChange]:
        queue: asyncio.Queue[IndexChange] = asyncio.Queue(self._queue_size)
        self._subscribers.setdefault(patient_id, set()).add(queue)
        return queue

    def unsubscribe(self, patient_id: str, queue: asyncio.Queue[IndexChange]) -> None:
        queues = self._subscribers.get(patient_id, set())
        queues.discard(queue)
        if not queues:
            self._subscribers.pop(patient_id, None)

    def subscribers(self, patient_id: str) -> int:
        return len(self._subscribers.get(patient_id, ()))

    def offer(self, change: IndexChange) -> None:
        """Hand a change to its patient's subscribers, once per event id (replays ignored)."""
        if change.meta.event_id in self._seen:
            return
        self._seen[change.meta.event_id] = None
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        patient = change.engagement.registered_resident_identification
        for queue in self._subscribers.get(patient, ()):
            if queue.full():
                queue.get_nowait()  # a slow reader loses the oldest notice, not the newest
            queue.put_nowait(change)


@dataclass(frozen=True)
class Notice:
    """New information at a producer the reader may read from (what changed, where)."""

    change: str  # created | content_updated | deleted
    category: str
    logical_address: str
    data_controller: str
    most_recent_content: str
    event_id: str


@dataclass
class Subscription:
    """One reader's subscription to one patient, until ``until`` (epoch seconds)."""

    reading: Reading
    until: float
    queue: asyncio.Queue[IndexChange]

    @property
    def categories(self) -> list[str]:
        return sorted(set(self.reading.categories))


class PushService:
    """Subscriptions and the notices each reader may be given."""

    def __init__(self, consent: ConsentClient, hub: Hub, max_s: float) -> None:
        self._consent, self._hub, self._max_s = consent, hub, max_s

    async def subscribe(self, reading: Reading, expires: float) -> Subscription:
        """A subscription ending at ``expires`` (the reader's token) or after ``max_s``; refused
        (Denied ``relation.missing``) without a current relation between the reader's unit and
        the patient, as the consent service's standing says."""
        try:
            related = await self._consent.has_relation(reading.bearer, reading.patient_id)
        except Unavailable:
            raise ServiceUnavailable("decision.unavailable", NO_DECISION) from None
        if not related:
            raise Denied("relation.missing", "Subscribing needs a current patient relation.")
        until = min(expires, time.time() + self._max_s)
        return Subscription(reading, until, self._hub.subscribe(reading.patient_id))

    async def notices(self, subscription: Subscription,
                      quiet_s: float) -> AsyncIterator[Notice | None]:
        """The subscription's notices until it ends, and None after each ``quiet_s`` without
        one (for a keep-alive)."""
        while (left := subscription.until - time.time()) > 0:
            try:
                async with asyncio.timeout(min(left, quiet_s)):
                    change = await subscription.queue.get()
            except TimeoutError:
                yield None
                continue
            notice = await self._notice(subscription.reading, change)
            if notice is not None:
                yield notice

    def close(self, subscription: Subscription) -> None:
        """The subscription's end (its caller's, in a ``finally``): no more changes for it."""
        self._hub.unsubscribe(subscription.reading.patient_id, subscription.queue)

    async def _notice(self, reading: Reading, change: IndexChange) -> Notice | None:
        engagement = change.engagement
        category = find_by_code(engagement.service_domain, engagement.categorization)
        if category is None or category.key not in reading.categories:
            return None
        target = Target(engagement.logical_address, category.key, engagement.data_controller,
                        engagement.source_system)
        try:
            decision = await self._consent.decide(reading.bearer, reading.patient_id,
                                                  [category.key], [target])
        except Unavailable:
            return None  # fail closed: nothing is announced without a decision
        if not decision.allows(target).allowed:
            return None
        return Notice(_CHANGE.get(change.change, "changed"), category.key, target.logical_address,
                      target.data_controller, engagement.most_recent_content,
                      change.meta.event_id)
