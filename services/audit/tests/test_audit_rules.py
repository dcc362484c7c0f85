"""Each sample-check rule fires on a crafted case and stays silent on a normal one (real DB)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from audit_fixtures import OFFICE_TIME, READER, access_event, patient, refused_event, relation_event

from npo_audit.domain import Entry, access_entry, consent_entry
from npo_audit.domain_rules import Person, refusal_crossings
from npo_audit.signing import RegisterKey
from npo_audit.store_pg import PostgresAuditStore
from npo_platform.contracts import ConsentEvent
from npo_platform.contracts.events_pb2 import AccessBasis

pytestmark = pytest.mark.integration
OTHER_UNIT = "SE2321000016-1002"


async def _rules(store: PostgresAuditStore, entries: Sequence[Entry]) -> list[set[str]]:
    """The rules fired per entry, after a relation for every patient with UNIT exists."""
    relations = [consent_entry(relation_event(e.patient_id)) for e in entries]
    await store.append("consent-p0", relations)
    appended = await store.append("access-p0", entries)
    fired: dict[str, set[str]] = {}
    for flag in appended.flags:
        fired.setdefault(flag.event_id, set()).add(flag.rule.value)
    return [fired.get(e.event_id, set()) for e in entries]


async def test_a_normal_access_raises_no_flag(pg_store: PostgresAuditStore) -> None:
    assert await _rules(pg_store, [access_entry(access_event(patient(1)))]) == [set()]


async def test_emergency_access_is_flagged(pg_store: PostgresAuditStore) -> None:
    event = access_event(patient(2), basis=AccessBasis.EMERGENCY)
    assert await _rules(pg_store, [access_entry(event)]) == [{"emergency"}]


async def test_protected_identity_is_flagged(pg_store: PostgresAuditStore) -> None:
    event = access_event(patient(3), protected=True)
    assert await _rules(pg_store, [access_entry(event)]) == [{"protected_identity"}]


async def test_access_without_an_active_relation_is_flagged(pg_store: PostgresAuditStore) -> None:
    other_unit = access_entry(access_event(patient(4), unit=OTHER_UNIT))
    assert await _rules(pg_store, [other_unit]) == [{"no_active_relation"}]


async def test_access_after_the_relation_was_revoked_is_flagged(pg_store: PostgresAuditStore) -> None:
    pid, record_id = patient(5), "rel-5"
    registered = relation_event(pid, record_id=record_id)
    revoked = relation_event(pid, record_id=record_id, revoked=True, at=OFFICE_TIME - timedelta(hours=1))
    await pg_store.append("consent-p0", [consent_entry(registered), consent_entry(revoked)])

    appended = await pg_store.append("access-p0", [access_entry(access_event(pid))])

    assert [f.rule.value for f in appended.flags] == ["no_active_relation"]


async def test_a_refused_revocation_of_a_relation_does_not_end_it(
    pg_store: PostgresAuditStore,
) -> None:
    pid, record_id = patient(15), "rel-15"
    registered = relation_event(pid, record_id=record_id)
    refused = relation_event(pid, record_id=record_id, revoked=True, at=OFFICE_TIME - timedelta(hours=1))
    refused.change, refused.attempted = ConsentEvent.REFUSED, ConsentEvent.REVOKED
    refused.refusal_code = "record.not_own_unit"
    await pg_store.append("consent-p0", [consent_entry(registered), consent_entry(refused)])

    appended = await pg_store.append("access-p0", [access_entry(access_event(pid))])

    assert appended.flags == ()


@pytest.mark.parametrize(
    "at",
    [datetime.fromisoformat("2026-03-10T22:30:00+00:00"),  # Tuesday 23:30 in Stockholm
     datetime.fromisoformat("2026-03-14T10:00:00+00:00")],  # a Saturday
)
async def test_access_out_of_hours_is_flagged(pg_store: PostgresAuditStore, at: datetime) -> None:
    event = access_event(patient(6), at=at)
    assert await _rules(pg_store, [access_entry(event)]) == [{"out_of_hours"}]


async def test_a_reader_sharing_surname_or_address_with_the_patient_is_flagged(
    pg_store: PostgresAuditStore, tmp_path: object
) -> None:
    key = RegisterKey(b"k" * 32)
    same_name, same_address, stranger = patient(7), patient(8), patient(9)
    await pg_store.register_persons({
        same_name: Person("andersson", key.digest("Storgatan 1, Motala")),
        same_address: Person("berg", key.digest("Ågatan 5,  Kinda")),
        stranger: Person("lind", key.digest("Lillgatan 9, Ydre")),
        "SE2321000016-9001": Person("andersson-x", key.digest("ågatan 5 kinda")),
    })
    entries = [
        access_entry(access_event(same_name, name="Anna Andersson")),
        access_entry(access_event(same_address, name="Anna Andersson")),
        access_entry(access_event(stranger, name="Anna Andersson")),
    ]
    # The register's surname for the reader wins over the name in the token ("andersson-x").
    assert await _rules(pg_store, entries) == [set(), {"shared_surname_or_address"}, set()]


async def test_a_reader_without_register_entry_is_compared_by_the_name_in_the_event(
    pg_store: PostgresAuditStore,
) -> None:
    pid = patient(10)
    await pg_store.register_persons({pid: Person("svensson")})
    entries = [access_entry(access_event(pid, user="SE2321000016-9002", name="Per Svensson"))]
    assert await _rules(pg_store, entries) == [{"shared_surname_or_address"}]


async def test_unusually_many_patients_per_reader_per_hour_is_flagged_once(
    pg_store: PostgresAuditStore,
) -> None:
    # 40 patients in the hour is the limit: the 41st distinct patient crosses it. The reader's
    # accesses are spread over two chains (partitions), as the topic is keyed by patient.
    first = [access_entry(access_event(patient(100 + i), at=OFFICE_TIME + timedelta(minutes=i)))
             for i in range(30)]
    second = [access_entry(access_event(patient(100 + i), at=OFFICE_TIME + timedelta(minutes=i % 59)))
              for i in range(25, 45)]
    await pg_store.append("access-p0", first)
    assert await pg_store.sweep(40) == []
    await pg_store.append("access-p1", second)
    normal_reader = [access_entry(access_event(patient(i), user="SE2321000016-9003")) for i in range(40)]
    await pg_store.append("access-p2", normal_reader)

    flags = await pg_store.sweep(40)

    assert [(f.rule.value, f.event_id) for f in flags] == [("many_patients_per_hour", second[15].event_id)]
    assert "41 distinct patients" in flags[0].detail or "45 distinct patients" in flags[0].detail
    later = [access_entry(access_event(patient(200), at=OFFICE_TIME + timedelta(minutes=50)))]
    await pg_store.append("access-p0", later)
    assert await pg_store.sweep(40) == []  # once per reader and hour


async def test_a_user_repeating_refused_commands_is_flagged_once_per_hour(
    pg_store: PostgresAuditStore,
) -> None:
    # Refused commands are consent records on the consent chains, one user's spread over two.
    tries = [consent_entry(refused_event(patient(300 + i), at=OFFICE_TIME + timedelta(minutes=i)))
             for i in range(4)]
    await pg_store.append("consent-p0", tries[:2])
    assert await pg_store.sweep(40, 3) == []  # two refusals: not yet repeated enough
    other_user = [consent_entry(refused_event(patient(310 + i), user="SE2321000016-9004",
                                              at=OFFICE_TIME + timedelta(minutes=i)))
                  for i in range(2)]
    await pg_store.append("consent-p1", [*tries[2:], *other_user])

    flags = await pg_store.sweep(40, 3)

    assert [(f.rule.value, f.event_id) for f in flags] == [("repeated_refused_attempts", tries[2].event_id)]
    assert "refused attempts within the hour (limit 3)" in flags[0].detail
    later = [consent_entry(refused_event(patient(320), at=OFFICE_TIME + timedelta(minutes=40)))]
    await pg_store.append("consent-p0", later)
    assert await pg_store.sweep(40, 3) == []  # once per user and hour
    registered = [consent_entry(relation_event(patient(330 + i), at=OFFICE_TIME)) for i in range(3)]
    await pg_store.append("consent-p2", registered)
    assert await pg_store.sweep(40, 3) == []  # only refusals count


def test_the_in_memory_sweep_flags_the_same_refusal() -> None:
    tries = [consent_entry(refused_event(patient(400 + i), at=OFFICE_TIME + timedelta(minutes=i)))
             for i in range(4)]
    flags = refusal_crossings([*reversed(tries), consent_entry(relation_event(patient(401)))], 3)
    assert [(f.rule.value, f.event_id) for f in flags] == [("repeated_refused_attempts", tries[2].event_id)]


def test_refusals_straddling_a_clock_hour_count_together() -> None:
    # 9:59, 10:00 and 10:01: a clock hour would split them two and one, and flag nothing.
    edge = OFFICE_TIME + timedelta(minutes=59)
    tries = [consent_entry(refused_event(patient(500 + i), at=edge + timedelta(minutes=i)))
             for i in range(3)]
    flags = refusal_crossings(tries, 3)
    assert [(f.rule.value, f.event_id) for f in flags] == [("repeated_refused_attempts", tries[2].event_id)]
    assert refusal_crossings(tries, 3, {READER: [edge - timedelta(minutes=30)]}) == []  # flagged before
