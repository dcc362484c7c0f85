"""Consent state storage: the Protocol and the in-memory implementation (PostgreSQL: postgres.py).

Every change is written together with its ConsentEvent in an outbox (one transaction); the
relay publishes the outbox afterwards, so an event is never lost and never announced for a
change that was rolled back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from npo_platform.contracts import ConsentEvent

from .checks import CheckResult, FollowUpTask, Violation
from .domain import PatientState, Record

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

    async def save_check(self, event_id: str, result: CheckResult) -> bool:
        """Record an access check once; False when ``event_id`` was checked before."""
        ...

    async def follow_up_tasks(self, limit: int = 1000) -> list[FollowUpTask]: ...

    async def violations(self, limit: int = 1000) -> list[Violation]: ...


class InMemoryConsentStore:
    """The store for unit tests and single-process demos; same contract as PostgreSQL."""

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._expired: set[str] = set()
        self._outbox: list[ConsentEvent] = []
        self._published = 0
        self._checked: set[str] = set()
        self._tasks: list[FollowUpTask] = []
        self._violations: list[Violation] = []

    async def load_patient(self, patient_id: str) -> PatientState:
        return PatientState(tuple(r for r in self._records.values() if r.patient_id == patient_id))

    async def get(self, record_id: str) -> Record | None:
        return self._records.get(record_id)

    async def add(self, record: Record, event: ConsentEvent) -> None:
        if record.id in self._records:
            raise ValueError("record id already used")
        self._records[record.id] = record
        self._outbox.append(event)

    async def revoke(self, record_id: str, at: datetime, by: str, event: ConsentEvent) -> bool:
        record = self._records.get(record_id)
        if record is None or record.revoked_at is not None:
            return False
        self._records[record_id] = replace(record, revoked_at=at)
        self._outbox.append(event)
        return True

    async def add_event(self, event: ConsentEvent) -> None:
        self._outbox.append(event)

    async def expire_due(self, now: datetime, event_for: EventFor, limit: int = 500) -> list[Record]:
        due = [
            r for r in self._records.values()
            if r.valid_to is not None and r.valid_to <= now and r.revoked_at is None
            and r.id not in self._expired
        ][:limit]
        for record in due:
            self._expired.add(record.id)
            self._outbox.append(event_for(record))
        return due

    async def relay(self, publish: Publish, limit: int = 500) -> int:
        pending = self._outbox[self._published : self._published + limit]
        if pending:
            await publish(pending)
            self._published += len(pending)
        return len(pending)

    async def save_check(self, event_id: str, result: CheckResult) -> bool:
        if event_id in self._checked:
            return False
        self._checked.add(event_id)
        self._tasks.extend(result.tasks)
        self._violations.extend(result.violations)
        return True

    async def follow_up_tasks(self, limit: int = 1000) -> list[FollowUpTask]:
        return self._tasks[:limit]

    async def violations(self, limit: int = 1000) -> list[Violation]:
        return self._violations[:limit]
