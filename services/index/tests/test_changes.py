"""Change-stream records (IndexChanges): stable ids, one record per patient, subscriber filters,
coverage figures (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
from index_helpers import CONTROLLER, T0, changes_in, engagement, expected_change, patient, tx, update

from npo_engagement import Rules, transactions_of
from npo_index.domain import Change, CoverageCount, apply_all, coverage_report
from npo_index.events import (
    CHANGE_NAMESPACE,
    MAX_RECORD_BYTES,
    change_event_id,
    encode_change,
    outbox_messages,
)
from npo_platform.contracts import EventMeta, IndexChange, IndexChanges
from npo_producer import ChangeFilter


def test_change_ids_are_uuid5_of_cause_and_key_so_republishing_keeps_them() -> None:
    cause, key = str(uuid.uuid4()), bytes(range(32))
    expected = str(uuid.uuid5(CHANGE_NAMESPACE, f"{cause}/{key.hex()}"))
    assert change_event_id(cause, key) == expected == change_event_id(cause, key)


def test_outbox_messages_are_keyed_by_patient_and_carry_the_cause() -> None:
    u = update(tx(engagement(patient(71))))
    _, applied = apply_all({}, transactions_of(u, Rules()))
    (message,) = outbox_messages(applied)
    record = IndexChanges.FromString(message.payload)
    (change,) = record.changes
    assert message.key == patient(71)
    assert record.meta.event_id == message.event_id
    assert record.meta.source == "npo-index"
    assert change.caused_by_event_id == u.meta.event_id
    assert change.change == IndexChange.CREATED
    assert change.meta.event_id == change_event_id(u.meta.event_id, applied[0].record.key)
    assert change.engagement.creation_time.ToDatetime().year == 2026


def test_one_record_per_patient_with_that_patients_changes_in_order() -> None:
    a, b = patient(74), patient(75)
    first = update(
        tx(engagement(a, boi="doc-1")), tx(engagement(b, boi="doc-1")), tx(engagement(a, boi="doc-2"))
    )
    later = update(tx(engagement(b, boi="doc-1"), delete=True), at=T0 + timedelta(minutes=5))
    _, applied = apply_all({}, [t for u in (first, later) for t in transactions_of(u, Rules())])
    messages = outbox_messages(applied)
    assert [m.key for m in messages] == [a, b]
    records = {m.key: IndexChanges.FromString(m.payload) for m in messages}
    assert [c.engagement.business_object_instance_identifier for c in records[a].changes] == [
        "doc-1", "doc-2",
    ]
    assert [c.change for c in records[b].changes] == [IndexChange.CREATED, IndexChange.DELETED]
    assert {c.engagement.registered_resident_identification for c in records[b].changes} == {b}
    # A record's time is its latest change's; its id follows from its changes' ids alone.
    assert records[b].meta.event_time.ToDatetime() == (T0 + timedelta(minutes=5)).replace(tzinfo=None)
    assert [m.event_id for m in outbox_messages(applied)] == [m.event_id for m in messages]
    assert outbox_messages(applied[:1])[0].event_id != messages[0].event_id
    assert len({m.event_id for m in messages}) == 2


def test_subscribers_filter_by_service_domain_and_categorizations() -> None:
    change = IndexChange(engagement=engagement(patient(72), categorization="dia"))
    domain = change.engagement.service_domain
    assert ChangeFilter.of(domain).matches(change)
    assert ChangeFilter.of(domain, ["dia", "upp"]).matches(change)
    assert not ChangeFilter.of(domain, ["voo"]).matches(change)
    assert not ChangeFilter.of("riv:clinicalprocess:logistics:logistics").matches(change)


def test_coverage_share_counts_categories_1_to_11_once_each() -> None:
    description = "riv:clinicalprocess:healthcond:description"
    counts = [
        CoverageCount(CONTROLLER, description, "fun-fun", 3),
        CoverageCount(CONTROLLER, description, "pad-pad", 1),  # also category 10
        CoverageCount(CONTROLLER, "riv:crm:requeststatus", "req-act", 2),  # 14: not in 1-11
        CoverageCount(CONTROLLER, "urn:unknown", "x", 1),
    ]
    (report,) = coverage_report(counts)
    assert report.categories == (10, 14)
    assert report.share_available == 1 / 11
    assert report.engagements == 7
    assert report.unknown_codes == ("urn:unknown/x",)


def test_batch_building_reuses_one_message_without_carrying_fields_over() -> None:
    p = patient(73)
    created = update(tx(engagement(p, boi="doc-1")), tx(engagement(p, categorization="dia")))
    gone = update(tx(engagement(p, boi="doc-1"), delete=True), at=T0 + timedelta(minutes=1))
    transactions = [t for u in (created, gone) for t in transactions_of(u, Rules())]
    _, applied = apply_all({}, transactions)
    (message,) = outbox_messages(applied)
    # The framed bytes are exactly protobuf's own serialisation of the same IndexChanges.
    meta = EventMeta(event_id=message.event_id, source="npo-index")
    meta.event_time.FromDatetime(T0 + timedelta(minutes=1))
    expected = IndexChanges(meta=meta, changes=[expected_change(a) for a in applied])
    assert message.payload == expected.SerializeToString()


def test_a_change_of_many_kilobytes_is_framed_with_a_longer_length() -> None:
    u = update(tx(engagement(patient(76))))
    _, (applied,) = apply_all({}, transactions_of(u, Rules()))
    assert applied.record is not None
    # Longer than validation lets a field be, and than the table of short frames covers.
    long_identity = msgspec.structs.replace(applied.record.identity, owner="x" * 70_000)
    record = msgspec.structs.replace(applied.record, identity=long_identity)
    big = msgspec.structs.replace(applied, record=record)
    (message,) = outbox_messages([big])
    (change,) = IndexChanges.FromString(message.payload).changes
    assert change == expected_change(big)
    assert change.engagement.owner == "x" * 70_000


def test_a_patients_many_changes_are_split_into_records_of_bounded_size_in_order() -> None:
    p = patient(77)
    u = update(*(tx(engagement(p, boi=f"doc-{n:04d}")) for n in range(1000)))
    later = update(*(tx(engagement(p, boi=f"doc-{n:04d}", content="20260102000000"))
                     for n in range(1000)), at=T0 + timedelta(minutes=1))
    _, applied = apply_all({}, [t for x in (u, later) for t in transactions_of(x, Rules())])
    messages = outbox_messages(applied)
    assert len(messages) > 1
    assert {m.key for m in messages} == {p}
    assert all(len(m.payload) <= MAX_RECORD_BYTES for m in messages)
    changes = changes_in(m.payload for m in messages)
    assert changes == [expected_change(a) for a in applied]  # all of them, in order
    assert len({m.event_id for m in messages}) == len(messages)


def test_the_hand_encoder_writes_protobufs_own_bytes_for_varied_records() -> None:
    u = update(tx(engagement(patient(78), boi="doc-1")))
    _, (applied,) = apply_all({}, transactions_of(u, Rules()))
    assert applied.record is not None
    identity, record = applied.record.identity, applied.record
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    variants = [
        {},
        {"owner": "Region Västra Götaland, vårdcentral Åsa"},  # multi-byte UTF-8
        {"business_object_instance_identifier": "d" * 127},  # the longest one-byte length
        {"business_object_instance_identifier": "d" * 128},  # the shortest two-byte length
        {"clinical_process_interest_id": "p" * 20_000},  # a three-byte length
        {"business_object_instance_identifier": "", "owner": ""},  # empty: left out
    ]
    times = [
        T0, T0 + timedelta(microseconds=1), epoch, epoch + timedelta(microseconds=5),
        epoch - timedelta(days=400, microseconds=250), datetime(2261, 1, 1, tzinfo=UTC),
    ]
    cases = []
    for n, fields in enumerate(variants):
        at = times[n % len(times)]
        changed = msgspec.structs.replace(
            record, identity=msgspec.structs.replace(identity, **fields),
            most_recent_content="" if n % 2 else "20260102030405", creation_time=at,
            update_time=times[(n + 1) % len(times)],
        )
        for kind in Change:
            cases.append(msgspec.structs.replace(applied, record=changed, change=kind))
    for n, at in enumerate(times):  # the event time goes into the meta
        version = msgspec.structs.replace(applied.cause.version, event_time=at, event_id=f"é-{n}")
        cause = msgspec.structs.replace(applied.cause, version=version)
        cases.append(msgspec.structs.replace(applied, cause=cause))
    for case in cases:
        event_id, payload = encode_change(case)
        expected = expected_change(case)
        assert payload == expected.SerializeToString()
        assert event_id == expected.meta.event_id
    assert len(cases) == 24
