"""Push: a reader with an active relation subscribes to a patient and hears of new information.

Index changes arrive on INDEX_CHANGES (a per-replica consumer group, so every replica sees all
of them) and are handed to the subscriptions of that patient. Each subscription asks for the
access decision on the changed engagement with its reader's own token before telling anything:
a blocked care giver's new information is not announced. A notification says *that* and
*where* there is new information, never its content (reading it goes through the audited
overview).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from npo_platform.categories import find_by_code
from npo_platform.contracts import IndexChange, IndexChanges
from npo_platform.identity import ClinicianClaims
from npo_platform.kafka import Received
from npo_platform.problems import Problem

from .api import SSE, reading_of, sse
from .clients import ConsentClient, Unavailable
from .decision import DecisionCache
from .domain import Target
from .schemas import SubscribeRequest

router = APIRouter(prefix="/v1", tags=["push"])
PROBE_CONTROLLER = "SE0000000000-NPORELATIONPROBE"  # a care giver no reader belongs to
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

    async def handle(self, batch: Sequence[Received[IndexChanges]]) -> None:
        for received in batch:
            for change in received.event.changes:
                self.offer(change)


def invalidating(cache: DecisionCache) -> Any:
    """A consent-event batch handler dropping cached decisions of the events' patients."""

    async def handle(batch: Sequence[Received[Any]]) -> None:
        for received in batch:
            cache.invalidate(received.event.patient_id)

    return handle


async def has_relation(consent: ConsentClient, bearer: str, patient_id: str) -> bool:
    """Ask the decision for a care giver the reader does not belong to: unless the reader has
    a current relation with the patient, the consent service answers ``no_relation``."""
    probe = Target("", "notes", PROBE_CONTROLLER)
    decision = await consent.decide(bearer, patient_id, ["notes"], [probe])
    verdict = decision.allows(probe)
    return verdict.allowed or verdict.reason_code == "no_consent"


@router.post("/subscriptions", responses={200: {"content": {SSE: {}}}})
async def subscribe(body: SubscribeRequest, request: Request,
                    claims: ClinicianClaims) -> StreamingResponse:
    """Server-sent ``change`` events about new information for the patient, for this reader."""
    reading = reading_of(body, request, claims)
    state = request.app.state
    try:
        related = await has_relation(state.consent, reading.bearer, reading.patient_id)
    except Unavailable:
        raise Problem(503, "decision.unavailable", "No access decision could be had.") from None
    if not related:
        raise Problem(403, "relation.missing", "Subscribing needs a current patient relation.")
    until = min(float(claims.exp), time.time() + state.settings.push_max_s)
    queue = state.hub.subscribe(reading.patient_id)
    return StreamingResponse(
        _notices(state.hub, state.consent, queue, reading.bearer, reading.patient_id,
                 set(reading.categories), until),
        media_type=SSE, headers={"Cache-Control": "no-store"},
    )


async def _notices(hub: Hub, consent: ConsentClient, queue: asyncio.Queue[IndexChange],
                   bearer: str, patient_id: str, categories: set[str],
                   until: float) -> AsyncIterator[str]:
    try:
        yield sse("subscribed", {"categories": sorted(categories)})
        while (left := until - time.time()) > 0:
            try:
                async with asyncio.timeout(min(left, 15.0)):
                    change = await queue.get()
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            notice = await _notice(consent, bearer, patient_id, categories, change)
            if notice is not None:
                yield sse("change", notice)
        yield sse("expired", {})
    finally:
        hub.unsubscribe(patient_id, queue)


async def _notice(consent: ConsentClient, bearer: str, patient_id: str, categories: set[str],
                  change: IndexChange) -> dict[str, Any] | None:
    engagement = change.engagement
    category = find_by_code(engagement.service_domain, engagement.categorization)
    if category is None or category.key not in categories:
        return None
    target = Target(engagement.logical_address, category.key, engagement.data_controller,
                    engagement.source_system)
    try:
        decision = await consent.decide(bearer, patient_id, [category.key], [target])
    except Unavailable:
        return None  # fail closed: nothing is announced without a decision
    if not decision.allows(target).allowed:
        return None
    return {"change": _CHANGE.get(change.change, "changed"), "category": category.key,
            "logicalAddress": target.logical_address, "dataController": target.data_controller,
            "mostRecentContent": engagement.most_recent_content, "eventId": change.meta.event_id}
