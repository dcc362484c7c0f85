"""The freshness rule and identity, without I/O."""

from __future__ import annotations

from datetime import timedelta

from index_helpers import T0, engagement, patient, tx, update

from npo_engagement import Rules, identity_of, transactions_of
from npo_index.domain import NOT_APPLICABLE, Change, Record, apply_all

RULES = Rules()


def _fold(*updates: object) -> tuple[dict[bytes, Record], list[Change]]:
    rows: dict[bytes, Record] = {}
    changes: list[Change] = []
    for u in updates:
        written, applied = apply_all(rows, transactions_of(u, RULES))  # type: ignore[arg-type]
        rows.update(written)
        changes += [a.change for a in applied if a.change is not None]
    return rows, changes


def test_empty_optional_key_parts_are_normalised_to_na_and_hash_alike() -> None:
    e = engagement(patient(1))
    identity = identity_of(e)
    assert identity.business_object_instance_identifier == NOT_APPLICABLE
    assert identity.owner == NOT_APPLICABLE
    e.business_object_instance_identifier = "NA"
    assert identity_of(e).key == identity.key


def test_a_stale_update_after_a_newer_one_changes_nothing() -> None:
    p = patient(2)
    newer = update(tx(engagement(p, content="20260102000000")), at=T0 + timedelta(minutes=1))
    older = update(tx(engagement(p, content="20260101000000")), at=T0)
    rows, changes = _fold(newer, older)
    (record,) = rows.values()
    assert record.most_recent_content == "20260102000000"
    assert changes == [Change.CREATED]


def test_out_of_order_delivery_ends_in_the_same_content_as_in_order() -> None:
    p = patient(3)
    ups = [update(tx(engagement(p, content=f"2026010{d}000000")), at=T0 + timedelta(minutes=d))
           for d in range(1, 5)]
    in_order, _ = _fold(*ups)
    reversed_order, _ = _fold(*reversed(ups))
    assert [r.most_recent_content for r in in_order.values()] == ["20260104000000"]
    assert [r.most_recent_content for r in reversed_order.values()] == ["20260104000000"]


def test_a_delete_is_not_undone_by_a_late_older_update() -> None:
    p = patient(4)
    created = update(tx(engagement(p)), at=T0)
    deleted = update(tx(engagement(p), delete=True), at=T0 + timedelta(minutes=2))
    late = update(tx(engagement(p, content="20260101130000")), at=T0 + timedelta(minutes=1))
    rows, changes = _fold(created, deleted, late)
    assert [r.deleted for r in rows.values()] == [True]
    assert changes == [Change.CREATED, Change.DELETED]


def test_a_newer_update_after_a_delete_creates_the_record_again() -> None:
    p = patient(5)
    rows, changes = _fold(
        update(tx(engagement(p)), at=T0),
        update(tx(engagement(p), delete=True), at=T0 + timedelta(minutes=1)),
        update(tx(engagement(p)), at=T0 + timedelta(minutes=2)),
    )
    assert [r.deleted for r in rows.values()] == [False]
    assert changes == [Change.CREATED, Change.DELETED, Change.CREATED]


def test_duplicates_and_unchanged_content_are_not_changes() -> None:
    p = patient(6)
    first = update(tx(engagement(p)), at=T0)
    same_content_later = update(tx(engagement(p)), at=T0 + timedelta(minutes=1))
    _, changes = _fold(first, first, same_content_later)
    assert changes == [Change.CREATED]


def test_index_times_come_from_event_times_so_replays_are_identical() -> None:
    p = patient(7)
    ups = (update(tx(engagement(p)), at=T0),
           update(tx(engagement(p, content="20260101130000")), at=T0 + timedelta(minutes=3)))
    first, _ = _fold(*ups)
    again, _ = _fold(*ups)
    assert first == again
    (record,) = first.values()
    assert (record.creation_time, record.update_time) == (T0, T0 + timedelta(minutes=3))
