"""Announcing the population's engagements, and a steady stream of new care events at a set rate."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from npo_simulator.notifications import EngagementSink, engagements_by_producer
from npo_simulator.organisations import Organisation
from npo_simulator.records import Record
from npo_simulator.store import RecordSource

log = logging.getLogger(__name__)

SinkFor = Callable[[Organisation], EngagementSink]


@dataclass
class Progress:
    people: int = 0
    records: int = 0
    engagements: int = 0


async def publish(records: Iterable[Record], sink_for: SinkFor, progress: Progress) -> None:
    """Announce the engagements ``records`` imply, each producer through its own sink."""
    for org, transactions in engagements_by_producer(records).items():
        await sink_for(org).publish(transactions)
        progress.engagements += len(transactions)


async def announce_population(
    source: RecordSource, sink_for: SinkFor, *, chunk: int = 2_000,
    on_progress: Callable[[Progress], None] | None = None,
) -> Progress:
    """Announce every person's history, ``chunk`` people at a time."""
    progress = Progress()
    batch: list[Record] = []
    for n, person in enumerate(source.people, start=1):
        batch.extend(source.histories.of(person))
        if n % chunk == 0 or n == len(source.people):
            progress.people, progress.records = n, progress.records + len(batch)
            await publish(batch, sink_for, progress)
            batch = []
            if on_progress:
                on_progress(progress)
    return progress


async def stream(
    source: RecordSource, sink_for: SinkFor, *, rate: float, seconds: float, seed: int = 1,
    clock: Callable[[], datetime] = datetime.now,
) -> Progress:
    """New care events at ``rate`` per second for ``seconds`` (0: until cancelled)."""
    rng = random.Random(f"npo-stream:{seed}")
    progress = Progress()
    began = time.monotonic()
    while seconds <= 0 or time.monotonic() - began < seconds:
        person = rng.choice(source.people)
        records = source.histories.new_episode(person, rng, clock().replace(microsecond=0), progress.people)
        source.add_live(records)
        progress.people += 1
        progress.records += len(records)
        await publish(records, sink_for, progress)
        await _pace(began, progress.people, rate)
    return progress


async def _pace(began: float, done: int, rate: float) -> None:
    """Sleep until event number ``done`` is due, so the rate holds on average."""
    due = began + done / rate
    await asyncio.sleep(max(0.0, due - time.monotonic()))
