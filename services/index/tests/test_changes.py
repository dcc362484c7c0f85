"""IndexChange events: stable ids, subscriber filters, coverage figures (no I/O)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from index_helpers import CONTROLLER, T0, engagement, patient, tx, update

from npo_index.changes import CHANGE_NAMESPACE, change_event_id, index_change, outbox_messages
from npo_index.coverage import coverage_report
from npo_index.domain import apply_all
from npo_index.store import CoverageCount
from npo_platform.contracts import IndexChange
from npo_producer import ChangeFilter
from npo_producer.validation import Rules, transactions_of


def test_change_ids_are_uuid5_of_cause_and_key_so_republishing_keeps_them() -> None:
    cause, key = str(uuid.uuid4()), bytes(range(32))
    expected = str(uuid.uuid5(CHANGE_NAMESPACE, f"{cause}/{key.hex()}"))
    assert change_event_id(cause, key) == expected == change_event_id(cause, key)


def test_outbox_messages_are_keyed_by_patient_and_carry_the_cause() -> None:
    u = update(tx(engagement(patient(71))))
    _, applied = apply_all({}, transactions_of(u, Rules()))
    (message,) = outbox_messages(applied)
    change = IndexChange.FromString(message.payload)
    assert message.key == patient(71)
    assert change.caused_by_event_id == u.meta.event_id
    assert change.change == IndexChange.CREATED
    assert change.meta.event_id == message.event_id
    assert change.engagement.creation_time.ToDatetime().year == 2026


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
    assert [m.payload for m in outbox_messages(applied)] == [
        index_change(a).SerializeToString() for a in applied
    ]
