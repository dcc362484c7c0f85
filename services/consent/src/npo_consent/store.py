"""Where consent state lives: the ConsentStore port (store_pg.py and store_memory.py adapt it).

Every change is written together with its ConsentEvent in an outbox (one transaction); the
relay publishes the outbox afterwards, so an event is never lost and never announced for a
change that was rolled back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol

from npo_platform.contracts import ConsentEvent

from .domain import PatientState, Record
from .domain_checks import Violation

Publish = Callable[[Sequence[ConsentEvent]], Awaitable[None]]
EventFor = Callable[[Record], ConsentEvent]


class ConsentStore(Protocol):
    async def load_patient(self, patient_id: str) -> PatientState:
        """Every record of the patient, revoked and expired ones included (history)."""
        ...

    async def get(self, record_id: str) -> Record | None: ...

    async def add(self, record: Record, event: ConsentEvent) -> None:
        """Store a new record and its event atomically."""
        ...

    async def revoke(self, record_id: str, at: datetime, by: str, event: ConsentEvent) -> bool:
        """Close a record's window at ``at`` with its event; False when already revoked."""
        ...

    async def add_event(self, event: ConsentEvent) -> None:
        """Store an event that changes no record (a refused command) in the outbox."""
        ...

    async def expire_due(self, now: datetime, event_for: EventFor, limit: int = 500) -> list[Record]:
        """Mark records whose window ended by ``now`` as expired, with one event each."""
        ...

    async def relay(self, publish: Publish, limit: int = 500) -> int:
        """Publish pending outbox events in order, then mark them; returns how many."""
        ...

    async def save_check(self, event_id: str, violations: Sequence[Violation]) -> bool:
        """Record an access check once; False when ``event_id`` was checked before."""
        ...

    async def violations(self, limit: int = 1000) -> list[Violation]: ...
