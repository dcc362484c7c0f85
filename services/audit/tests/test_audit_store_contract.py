"""One contract, two stores: the in-memory log and the PostgreSQL log behave the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from audit_fixtures import OFFICE_TIME, access_event, patient, refused_event, relation_event

from npo_audit.config import AuditSettings
from npo_audit.domain import Kind, access_entry, consent_entry
from npo_audit.main import open_store
from npo_audit.service import verify_log
from npo_audit.signing import Checkpoint, ensure_signing_key, load_verifier
from npo_audit.store import AuditStore
from npo_audit.store_memory import InMemoryAuditStore


class AuditStoreContract:
    """Subclasses provide ``store`` (fresh and empty) and ``keys`` (the checkpoint key dir)."""

    async def test_every_event_is_stored_once_even_when_delivered_again(self, store: AuditStore) -> None:
        events = [access_entry(access_event(patient(i))) for i in range(20)]

        first = await store.append("access-p0", events)
        again = await store.append("access-p0", events[5:] + events[:3])
        await store.append("access-p1", events[:1])  # the same event on another chain: still once

        assert len(first.stored) == 20
        assert again.stored == ()
        assert again.duplicates == 18
        assert await store.count(Kind.ACCESS) == 20

    async def test_searches_are_counted_once_per_stored_record(self, store: AuditStore) -> None:
        events = [access_entry(access_event(patient(i), outcome=1 + i % 3)) for i in range(9)]

        await store.append("access-p0", events[:6])
        await store.append("access-p0", events)  # redelivered: only the last three are new
        await store.append("access-p1", events[3:])  # on another chain: nothing new
        await store.append("consent-p0", [consent_entry(relation_event(patient(1)))])  # no search

        counts = await store.search_counts()
        assert list(counts.values()) == [(9, 6)]  # one month, giver and unit; denied: not answered
        assert next(iter(counts)).month == OFFICE_TIME.date().replace(day=1)

    async def test_a_batch_repeating_an_event_stores_it_once(self, store: AuditStore) -> None:
        entry = access_entry(access_event(patient(1)))

        appended = await store.append("access-p0", [entry, entry, entry])

        assert [r.seq for r in appended.stored] == [1]

    async def test_chains_continue_across_batches_and_link_hashes(self, store: AuditStore) -> None:
        a = await store.append("access-p0", [access_entry(access_event(patient(i))) for i in range(3)])
        b = await store.append("access-p0", [access_entry(access_event(patient(i))) for i in range(2)])

        assert [r.seq for r in a.stored + b.stored] == [1, 2, 3, 4, 5]
        assert b.stored[0].prev_hash == a.stored[-1].hash
        records = [r async for r in store.records("access-p0")]
        assert [r.hash for r in records] == [r.hash for r in a.stored + b.stored]

    async def test_each_append_is_sealed_by_a_signed_checkpoint(self, store: AuditStore, keys: Path) -> None:
        for _ in range(3):
            await store.append("access-p2", [access_entry(access_event(patient(7)))])

        checkpoints = await store.checkpoints("access-p2")
        verifier = load_verifier(keys)
        assert [c.seq for c in checkpoints] == [1, 2, 3]
        assert all(verifier.valid(c) for c in checkpoints)

    async def test_a_clean_log_verifies(self, store: AuditStore, keys: Path) -> None:
        await store.append("access-p0", [access_entry(access_event(patient(i))) for i in range(10)])
        await store.append("consent-p0", [consent_entry(relation_event(patient(1)))])

        report = await verify_log(store, load_verifier(keys))

        assert report.ok, [f.describe() for f in report.findings]
        assert report.verified == {"access-p0": 10, "consent-p0": 1}

    async def test_flags_are_raised_with_the_records(self, store: AuditStore) -> None:
        emergency = access_event(patient(3), basis=4)  # EMERGENCY

        appended = await store.append("access-p0", [access_entry(emergency)])

        assert [f.rule.value for f in appended.flags] == ["emergency"]
        assert [f.event_id for f in await store.flags()] == [emergency.meta.event_id]

    async def test_access_within_an_active_relation_is_not_flagged(self, store: AuditStore) -> None:
        pid = patient(4)
        await store.append("consent-p0", [consent_entry(relation_event(pid))])

        appended = await store.append("access-p0", [access_entry(access_event(pid))])

        assert appended.flags == ()

    async def test_the_sweep_flags_the_access_bringing_in_one_patient_too_many(
        self, store: AuditStore
    ) -> None:
        at = [OFFICE_TIME + timedelta(minutes=i) for i in range(4)]
        entries = [access_entry(access_event(patient(i), at=at[i])) for i in range(4)]
        await store.append("access-p0", entries[:2])
        await store.append("access-p1", entries[2:])

        flags = await store.sweep(2)

        assert [(f.rule.value, f.event_id) for f in flags] == [
            ("many_patients_per_hour", entries[2].event_id)
        ]
        assert await store.sweep(2) == []

    async def test_the_windowed_rules_count_over_a_sliding_hour_not_the_clock_hour(
        self, store: AuditStore
    ) -> None:
        # At 9:59, 10:00 and 10:01: three within three minutes, across the top of a clock hour.
        edge = OFFICE_TIME + timedelta(minutes=59)
        at = [edge + timedelta(minutes=i) for i in range(3)]
        reads = [access_entry(access_event(patient(20 + i), at=t)) for i, t in enumerate(at)]
        tries = [consent_entry(refused_event(patient(30 + i), at=t)) for i, t in enumerate(at)]
        await store.append("access-p0", reads[:2])
        await store.append("access-p1", reads[2:])
        await store.append("consent-p0", tries)

        flags = await store.sweep(2, 3)

        assert sorted((f.rule.value, f.event_id) for f in flags) == sorted([
            ("many_patients_per_hour", reads[2].event_id),
            ("repeated_refused_attempts", tries[2].event_id),
        ])
        assert await store.sweep(2, 3) == []

    async def test_attempts_more_than_an_hour_apart_are_not_repeated_attempts(
        self, store: AuditStore
    ) -> None:
        at = [OFFICE_TIME, OFFICE_TIME + timedelta(minutes=40), OFFICE_TIME + timedelta(minutes=61)]
        tries = [consent_entry(refused_event(patient(40 + i), at=t)) for i, t in enumerate(at)]
        await store.append("consent-p0", tries)

        assert await store.sweep(40, 3) == []


class TestInMemoryAuditStore(AuditStoreContract):
    @pytest.fixture
    def keys(self, tmp_path: Path) -> Path:
        return tmp_path / "keys"

    @pytest.fixture
    def store(self, keys: Path) -> AuditStore:
        return InMemoryAuditStore(ensure_signing_key(keys))


@pytest.mark.integration
class TestPostgresAuditStore(AuditStoreContract):
    @pytest.fixture
    def keys(self, audit_settings: AuditSettings) -> Path:
        return audit_settings.keys_dir

    @pytest.fixture
    async def store(self, audit_settings: AuditSettings) -> AsyncIterator[AuditStore]:
        async with open_store(audit_settings) as (_, store):
            yield store


async def test_verify_accepts_records_sealed_while_it_was_walking(tmp_path: Path) -> None:
    store = InMemoryAuditStore(ensure_signing_key(tmp_path / "keys"))
    await store.append("access-p0", [access_entry(access_event(patient(i))) for i in range(3)])
    stale = await store.checkpoints("access-p0")
    await store.append("access-p0", [access_entry(access_event(patient(9)))])
    fresh = await store.checkpoints("access-p0")
    answers = iter([stale, fresh])

    async def checkpoints(chain: str) -> list[Checkpoint]:
        return next(answers)

    store.checkpoints = checkpoints  # type: ignore[method-assign]
    report = await verify_log(store, load_verifier(tmp_path / "keys"))

    assert report.ok, [f.describe() for f in report.findings]
