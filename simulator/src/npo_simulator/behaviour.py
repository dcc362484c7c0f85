"""Per-producer behaviour: latency distribution, error rate, timeouts and outages, for fault tests."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from pydantic import BaseModel, Field


class Behaviour(BaseModel):
    """How one simulated producer answers. The default answers at once and never fails."""

    latency_ms: float = Field(0.0, ge=0, description="median added latency")
    jitter_ms: float = Field(0.0, ge=0, description="log-normal spread around the median")
    error_rate: float = Field(0.0, ge=0, le=1, description="share of calls answered with an error")
    error_status: int = Field(500, ge=400, le=599)
    timeout: bool = Field(False, description="never answer within hang_s seconds")
    hang_s: float = Field(120.0, gt=0)
    outage: bool = Field(False, description="answer every call 503 at once")


@dataclass(frozen=True)
class Outcome:
    """What to do with one call: wait ``delay_s``, then answer ``status`` (None: normally)."""

    delay_s: float
    status: int | None


class BehaviourBook:
    """Behaviour per logical address, with a seeded random source per address (reproducible)."""

    def __init__(self, seed: int = 1, default: Behaviour | None = None) -> None:
        self._seed = seed
        self._default = default or Behaviour()
        self._by_address: dict[str, Behaviour] = {}
        self._rngs: dict[str, random.Random] = {}

    def set(self, address: str, behaviour: Behaviour) -> None:
        self._by_address[address] = behaviour

    def get(self, address: str) -> Behaviour:
        return self._by_address.get(address, self._default)

    def reset(self) -> None:
        self._by_address.clear()
        self._rngs.clear()

    def draw(self, address: str) -> Outcome:
        """Decide the next call's fate for ``address``."""
        b = self.get(address)
        if b.outage:
            return Outcome(0.0, 503)
        if b.timeout:
            return Outcome(b.hang_s, None)
        rng = self._rngs.setdefault(address, random.Random(f"npo-behaviour:{self._seed}:{address}"))
        delay = _latency(b, rng)
        return Outcome(delay, b.error_status if rng.random() < b.error_rate else None)


def _latency(b: Behaviour, rng: random.Random) -> float:
    if b.latency_ms <= 0:
        return 0.0
    if b.jitter_ms <= 0:
        return b.latency_ms / 1000
    sigma = b.jitter_ms / b.latency_ms
    return rng.lognormvariate(0.0, sigma) * b.latency_ms / 1000


async def apply(outcome: Outcome) -> None:
    """Wait as the outcome says (cancelled with the request when the caller gives up)."""
    if outcome.delay_s > 0:
        await asyncio.sleep(outcome.delay_s)
