"""Consent state in memory: the store's contract without a database (unit tests, single-process
demos)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from npo_platform.contracts import ConsentEvent

from .domain import PatientState, Record
from .domain_checks import Violation
from .store import EventFor, Publish


class InMemoryConsentStore:
    """The store for unit tests and single-process demos; same contract as PostgreSQL."""

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._expired: set[str] = set()
        self._outbox: list[ConsentEvent] = []
        self._published = 0
        self._checked: set[str] = set()
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

    async def save_check(self, event_id: str, violations: Sequence[Violation]) -> bool:
        if event_id in self._checked:
            return False
        self._checked.add(event_id)
        self._violations.extend(violations)
        return True

    async def violations(self, limit: int = 1000) -> list[Violation]:
        return self._violations[:limit]
