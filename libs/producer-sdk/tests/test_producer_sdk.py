"""The SDK validates before sending and splits per patient (the validation rules themselves are
tested with the index, services/index/tests/test_validation.py, which applies the same rules)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import pytest

from npo_engagement import NOT_APPLICABLE, Identity, normalise_optional
from npo_platform.contracts.events_pb2 import Engagement, EngagementTransaction
from npo_platform.identifiers import make_personnummer
from npo_platform.kafka import EventPublisher
from npo_producer import ChangeFilter, EngagementProducer, InvalidUpdate, split_per_patient

SOURCE = "SE2321000016-1234"


def tx(patient: str, categorization: str = "voo") -> EngagementTransaction:
    return EngagementTransaction(engagement=Engagement(
        registered_resident_identification=patient,
        service_domain="riv:clinicalprocess:healthcond:description",
        categorization=categorization, logical_address="SE2321000016-9876", source_system=SOURCE,
        data_controller="SE2321000016-0001", most_recent_content="20261101120000",
    ))


def test_one_message_per_patient_in_first_seen_order() -> None:
    a = make_personnummer(datetime(1950, 1, 1, tzinfo=UTC).date(), 11)
    b = make_personnummer(datetime(1960, 2, 2, tzinfo=UTC).date(), 22)
    updates = split_per_patient(SOURCE, [tx(a), tx(b), tx(a, "dia")])
    assert [len(u.transactions) for u in updates] == [2, 1]
    assert [u.transactions[0].engagement.registered_resident_identification for u in updates] == [a, b]
    assert len({u.meta.event_id for u in updates}) == 2


def test_large_batches_are_chunked() -> None:
    a = make_personnummer(datetime(1950, 1, 1, tzinfo=UTC).date(), 11)
    updates = split_per_patient(SOURCE, [tx(a, f"c{n}") for n in range(2500)])
    assert [len(u.transactions) for u in updates] == [1000, 1000, 500]


def test_identity_normalises_empty_optional_parts() -> None:
    assert normalise_optional("") == NOT_APPLICABLE
    one = Identity("p", "d", "c", "l", "NA", "NA", "s", "g", "NA")
    assert one.key == Identity("p", "d", "c", "l", "NA", "NA", "s", "g", "NA").key
    assert len(one.key) == 32


def test_nothing_is_sent_when_a_transaction_is_invalid() -> None:
    producer = EngagementProducer(cast(EventPublisher, None), SOURCE)  # prepare() sends nothing
    good = make_personnummer(datetime(1950, 1, 1, tzinfo=UTC).date(), 11)
    with pytest.raises(InvalidUpdate) as caught:
        producer.prepare([tx(good), tx("191212121213")])  # bad check digit
    assert caught.value.codes == ("EI005",)


@pytest.mark.parametrize(("categorizations", "accepted"), [((), True), (("voo",), True), (("dia",), False)])
def test_change_filter(categorizations: tuple[str, ...], accepted: bool) -> None:
    from npo_platform.contracts import IndexChange

    change = IndexChange(engagement=tx("x").engagement)
    f = ChangeFilter.of("riv:clinicalprocess:healthcond:description", categorizations)
    assert f.matches(change) is accepted


def test_change_filter_selects_from_a_record_in_order() -> None:
    from npo_platform.contracts import IndexChange, IndexChanges

    kept, other, also = (IndexChange(engagement=tx("x").engagement) for _ in range(3))
    other.engagement.categorization = "dia"
    also.engagement.business_object_instance_identifier = "second"
    record = IndexChanges(changes=[kept, other, also])
    f = ChangeFilter.of("riv:clinicalprocess:healthcond:description", ["voo"])
    assert f.select(record) == [kept, also]
