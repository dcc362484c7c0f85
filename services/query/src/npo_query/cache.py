"""Access decisions kept for a few seconds, dropped at once on any consent event of the patient.

No stale allow after a revocation: every consent event invalidates the patient's entries, and
a decision fetched while an event for its patient arrived is not cached (a per-patient
generation counter, read before the call and compared after it).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from .domain import Decision, Target

CacheKey = tuple[str, ...]


class DecisionCache:
    """Decisions per (reader, patient, categories, targets), for ``ttl_s`` at most."""

    def __init__(self, ttl_s: float, size: int, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl_s
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[CacheKey, tuple[float, Decision]] = OrderedDict()
        self._by_patient: dict[str, set[CacheKey]] = {}
        self._generations: dict[str, int] = {}
        self.hits = 0

    def generation(self, patient: str) -> int:
        return self._generations.get(patient, 0)

    def get(self, key: CacheKey) -> Decision | None:
        found = self._entries.get(key)
        if found is None or self._clock() >= found[0]:
            return None
        self.hits += 1
        return found[1]

    def put(self, key: CacheKey, patient: str, generation: int, decision: Decision) -> None:
        """Keep ``decision`` unless the patient's consent state changed since ``generation``."""
        if self._ttl <= 0 or generation != self.generation(patient):
            return
        self._entries[key] = (self._clock() + self._ttl, decision)
        self._entries.move_to_end(key)
        self._by_patient.setdefault(patient, set()).add(key)
        while len(self._entries) > self._size:
            oldest, _ = self._entries.popitem(last=False)
            self._by_patient.get(oldest[1], set()).discard(oldest)

    def invalidate(self, patient: str) -> None:
        """A consent event for ``patient``: drop every decision about them."""
        self._generations[patient] = self.generation(patient) + 1
        for key in self._by_patient.pop(patient, set()):
            self._entries.pop(key, None)


def cache_key(reader: tuple[str, ...], patient: str, categories: list[str],
              targets: list[Target]) -> CacheKey:
    return (reader[0], patient, *reader[1:], ",".join(categories), *(t.id for t in targets))
