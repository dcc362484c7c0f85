"""The outbox relay: publishes what a service committed with its state, in commit order.

A service writes its state and the events announcing it in one database transaction (the
outbox); this relay publishes the events afterwards and only then marks them published, so an
event is never lost and never announced for a change that did not commit. A crash in between
publishes it again: at least once, consumers drop repeats by event id.

Two ways in, both in commit order: ``wake()`` after a commit (or every ``interval_s``) makes the
relay read what is pending from the outbox; ``hand_over`` gives it what was just committed, so it
need not read back what its own process wrote (the index's ingest). A failed publication is
retried with exponential backoff up to the retry policy's bound, for as long as it fails: the
events are durable in the outbox and their order must hold. An event the broker refuses for good
(too large, say) is dead-lettered with the reason instead, and the outbox carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka.errors import KafkaError

from npo_platform.kafka import BatchPublisher, PermanentError, RetryPolicy, SerializedEvent
from npo_platform.topics import Topic

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[SerializedEvent]], Awaitable[None]]


class Outbox(Protocol):
    """A service's outbox table, as the relay reads it."""

    async def relay(self, publish: Publish, limit: int = 500) -> int:
        """Hand the oldest pending events, in commit order, to ``publish``; once it returned,
        mark them published. Returns how many (0: none pending, or another replica has them)."""
        ...


@dataclass
class _Handed:
    events: Sequence[SerializedEvent]
    confirm: Callable[[], Awaitable[None]]


class OutboxRelay:
    """Publishes an outbox to ``topic`` through a BatchPublisher (see the module docstring).

    A relay is fed one way: with ``interval_s`` it reads the outbox when woken and every
    ``interval_s``; with None it publishes what is handed over and reads the outbox only when
    told (``flush`` at start, for what an earlier process left). ``queue_size`` bounds what
    ``hand_over`` holds: a full queue makes the committer wait (back pressure).
    """

    def __init__(
        self, outbox: Outbox, publisher: BatchPublisher, topic: Topic, *,
        interval_s: float | None = 1.0, retry: RetryPolicy | None = None, queue_size: int = 8,
    ) -> None:
        self._outbox, self._publisher, self.topic = outbox, publisher, topic
        self._interval_s = interval_s
        self._retry = retry or RetryPolicy()
        self._queue: asyncio.Queue[_Handed] = asyncio.Queue(queue_size)
        self._wake = asyncio.Event()
        self.published = 0
        self.dead_lettered = 0
        self.failures = 0

    def wake(self) -> None:
        """New events are in the outbox: publish them now rather than at the next interval."""
        self._wake.set()

    async def hand_over(
        self, events: Sequence[SerializedEvent], confirm: Callable[[], Awaitable[None]]
    ) -> None:
        """Publish events just committed to the outbox, then ``confirm`` (remove them there)."""
        if events:
            await self._queue.put(_Handed(events, confirm))
            self._wake.set()

    async def flush(self) -> int:
        """Publish everything pending in the outbox now; returns how many events went out."""
        total = 0
        while sent := await self._outbox.relay(self.publish):
            total += sent
        return total

    async def publish(self, events: Sequence[SerializedEvent]) -> None:
        """Publish ``events`` (acknowledged when this returns), dead-lettering what the broker
        refuses for good; a passing failure raises, and the caller tries again."""
        try:
            await self._publisher.publish(self.topic, events)
        except Exception as error:
            if not _refused_for_good(error):
                raise
            for event in events:  # find which: the others must still be published, in order
                await self._publish_alone(event)
            return
        self.published += len(events)

    async def _publish_alone(self, event: SerializedEvent) -> None:
        try:
            await self._publisher.publish(self.topic, [event])
        except Exception as error:
            if not _refused_for_good(error):
                raise
            code = error.code if isinstance(error, PermanentError) else "publish.refused"
            await self._publisher.dead_letter(self.topic, event, code, f"{type(error).__name__}: {error}")
            self.dead_lettered += 1
            log.warning("outbox event %s dead-lettered: %s", event.event_id, type(error).__name__)
            return
        self.published += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set and nothing handed over is left."""
        while not (stop.is_set() and self._queue.empty()):
            self._wake.clear()  # before looking: a commit meanwhile wakes the next round
            if not self._queue.empty():
                handed = self._queue.get_nowait()
                if not await self._until_done(functools.partial(self._deliver, handed), stop):
                    return  # stopped: what is left stays in the outbox for the next start
                continue
            if self._interval_s is not None:
                await self._until_done(self.flush, stop)
            await self._wait(stop, self._interval_s or 0.2)

    async def _deliver(self, handed: _Handed) -> None:
        await self.publish(handed.events)
        await handed.confirm()

    async def _until_done(self, attempt: Callable[[], Awaitable[object]], stop: asyncio.Event) -> bool:
        """Run ``attempt`` until it succeeds (True) or ``stop`` is set after a failure (False)."""
        failures = 0
        while True:
            try:
                await attempt()
                return True
            except Exception as error:  # broker or database away: keep the order, try again
                failures += 1
                self.failures += 1
                log.warning("outbox of %s not published (%s, attempt %d); retrying",
                            self.topic.name, type(error).__name__, failures)
                if stop.is_set():
                    return False
                await self._pause(stop, failures)

    async def _pause(self, stop: asyncio.Event, failures: int) -> None:
        policy = self._retry
        delay = min(policy.max_backoff_s, policy.initial_backoff_s * 2 ** (failures - 1))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)

    async def _wait(self, stop: asyncio.Event, seconds: float) -> None:
        """Until woken, handed something, stopped, or ``seconds`` passed."""
        if self._wake.is_set() or stop.is_set():
            return
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()


def _refused_for_good(error: BaseException) -> bool:
    """A refusal that no retry can change: PermanentError, or a Kafka error not retriable."""
    return isinstance(error, PermanentError) or (isinstance(error, KafkaError) and not error.retriable)
