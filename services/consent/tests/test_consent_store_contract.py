"""One contract for every ConsentStore: in memory and PostgreSQL behave the same."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import timedelta

import pytest
from consent_support import ANNA, CG_B, T0, UA1, new_patient

from npo_consent.domain import Kind, Record
from npo_consent.domain_checks import Violation
from npo_consent.service import consent_event
from npo_consent.store import ConsentStore
from npo_consent.store_memory import InMemoryConsentStore
from npo_consent.store_pg import open_store
from npo_platform.contracts import ConsentEvent


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ConsentStore]:
    if request.param == "memory":
        yield InMemoryConsentStore()
        return
    database_url: str = request.getfixturevalue("database_url")  # only the PostgreSQL run needs it
    store = await open_store(database_url, f"consent_contract_{uuid.uuid4().hex[:8]}", max_size=2)
    yield store
    await store.close()


def record(patient: str, kind: Kind = Kind.CONSENT, **changes: object) -> Record:
    base = Record(id=str(uuid.uuid4()), kind=kind, patient_id=patient, valid_from=T0,
                  registered_at=T0, registered_by=ANNA.user, care_unit=UA1,
                  valid_to=T0 + timedelta(days=30))
    return replace(base, **changes)  # type: ignore[arg-type]


def registered(rec: Record) -> ConsentEvent:
    return consent_event(rec, ConsentEvent.REGISTERED, T0, None)


class Collector:
    def __init__(self) -> None:
        self.events: list[ConsentEvent] = []

    async def __call__(self, events: Sequence[ConsentEvent]) -> None:
        self.events.extend(events)


async def drain(store: ConsentStore) -> list[ConsentEvent]:
    collected = Collector()
    while await store.relay(collected):
        pass
    return collected.events


class TestConsentStoreContract:
    async def test_added_records_come_back_per_patient(self, store: ConsentStore) -> None:
        patient, other = new_patient(), new_patient()
        rec = record(patient)
        await store.add(rec, registered(rec))
        await store.add(record(other), registered(record(other)))

        assert (await store.load_patient(patient)).records == (rec,)
        assert await store.get(rec.id) == rec

    async def test_every_change_is_relayed_once_in_order(self, store: ConsentStore) -> None:
        patient = new_patient()
        first, second = record(patient), record(patient, Kind.BLOCK, care_giver=CG_B)
        await store.add(first, registered(first))
        await store.add(second, registered(second))
        revoked = consent_event(first, ConsentEvent.REVOKED, T0 + timedelta(hours=1), None)
        assert await store.revoke(first.id, T0 + timedelta(hours=1), ANNA.user, revoked)

        events = await drain(store)
        mine = [(e.record_id, e.change) for e in events if e.patient_id == patient]
        assert mine == [
            (first.id, ConsentEvent.REGISTERED), (second.id, ConsentEvent.REGISTERED),
            (first.id, ConsentEvent.REVOKED),
        ]
        assert await drain(store) == []

    async def test_a_failed_publish_keeps_the_events_pending(self, store: ConsentStore) -> None:
        patient = new_patient()
        rec = record(patient)
        await store.add(rec, registered(rec))
        await drain(store)
        again = record(patient)
        await store.add(again, registered(again))

        async def broker_down(events: Sequence[ConsentEvent]) -> None:
            raise ConnectionError("broker down")

        with pytest.raises(ConnectionError):
            await store.relay(broker_down)
        assert [e.record_id for e in await drain(store)] == [again.id]

    async def test_revocation_is_kept_as_history_and_happens_once(self, store: ConsentStore) -> None:
        rec = record(new_patient())
        await store.add(rec, registered(rec))
        at = T0 + timedelta(days=1)
        event = consent_event(rec, ConsentEvent.REVOKED, at, None)

        assert await store.revoke(rec.id, at, ANNA.user, event) is True
        assert await store.revoke(rec.id, at, ANNA.user, event) is False
        stored = await store.get(rec.id)
        assert stored is not None
        assert stored.revoked_at == at
        assert stored.in_force(T0 + timedelta(hours=1))
        assert not stored.in_force(at)

    async def test_expiry_announces_each_ended_window_once(self, store: ConsentStore) -> None:
        patient = new_patient()
        ended, running = record(patient, valid_to=T0 + timedelta(hours=1)), record(patient)
        for rec in (ended, running):
            await store.add(rec, registered(rec))
        await drain(store)

        def expired(r: Record) -> ConsentEvent:
            return consent_event(r, ConsentEvent.EXPIRED, T0, None)

        later = T0 + timedelta(hours=2)
        due = [r.id for r in await store.expire_due(later, expired) if r.patient_id == patient]
        assert due == [ended.id]
        assert [r for r in await store.expire_due(later, expired) if r.patient_id == patient] == []
        events = [e for e in await drain(store) if e.patient_id == patient]
        assert [(e.record_id, e.change) for e in events] == [(ended.id, ConsentEvent.EXPIRED)]

    async def test_an_access_check_is_saved_once(self, store: ConsentStore) -> None:
        event_id, patient = str(uuid.uuid4()), new_patient()
        flag = Violation(event_id, patient, ANNA.user, UA1, CG_B, "", "no_consent", T0)

        assert await store.save_check(event_id, (flag,)) is True
        assert await store.save_check(event_id, (flag,)) is False
        assert [v for v in await store.violations() if v.access_event_id == event_id] == [flag]
