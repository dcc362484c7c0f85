"""Each validation code, in the spirit of EI000-EI006 (plus EI007, producer mismatch)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from index_helpers import ADDRESS, PRODUCER, T0, engagement, patient, tx, update

from npo_engagement import InvalidUpdate, Rules, transactions_of
from npo_platform.contracts import EngagementUpdate

RULES = Rules(own_addresses=frozenset({"SE5565594230-NPOIDX"}))
P = patient(11)


def _codes(u: EngagementUpdate) -> tuple[str, ...]:
    with pytest.raises(InvalidUpdate) as caught:
        transactions_of(u, RULES, received_at=T0)
    assert P not in str(caught.value), "a patient id must never appear in an error"
    return caught.value.codes


def test_a_valid_update_passes() -> None:
    assert len(transactions_of(update(tx(engagement(P))), RULES, received_at=T0)) == 1


def test_ei000_no_transactions_or_more_than_1000() -> None:
    assert _codes(update()) == ("EI000",)
    many = [tx(engagement(P, boi=str(n))) for n in range(1001)]
    assert _codes(update(*many)) == ("EI000",)


def test_ei001_the_same_identity_twice_in_one_message() -> None:
    assert _codes(update(tx(engagement(P)), tx(engagement(P, content="20260102000000")))) == ("EI001",)


def test_ei002_missing_key_field_or_surrounding_whitespace() -> None:
    assert _codes(update(tx(engagement(P, categorization="")))) == ("EI002",)
    assert _codes(update(tx(engagement(P, service_domain=" riv:x")))) == ("EI002",)
    assert _codes(update(tx(engagement(P, boi="abc ")))) == ("EI002",)


def test_ei003_field_longer_than_its_limit() -> None:
    assert _codes(update(tx(engagement(P, boi="x" * 129)))) == ("EI003",)
    assert _codes(update(tx(engagement(P, categorization="c" * 256)))) == ("EI003",)


def test_ei004_content_time_not_strict_or_event_time_in_the_future() -> None:
    assert _codes(update(tx(engagement(P, content="2026-01-01T12:00")))) == ("EI004",)
    assert _codes(update(tx(engagement(P, content="20261301120000")))) == ("EI004",)
    assert _codes(update(tx(engagement(P)), at=T0 + timedelta(hours=1))) == ("EI004",)


def test_ei005_invalid_patient_id() -> None:
    wrong_check_digit = P[:-1] + str((int(P[-1]) + 1) % 10)
    assert _codes(update(tx(engagement(wrong_check_digit)))) == ("EI005",)


def test_ei006_loop_protection_against_the_platforms_own_address() -> None:
    assert _codes(update(tx(engagement(P, logical_address="SE5565594230-NPOIDX")))) == ("EI006",)


def test_ei007_source_system_must_be_the_messages_producer() -> None:
    other = engagement(P, source_system="SE2321000016-5555", logical_address=ADDRESS)
    assert _codes(update(tx(other), producer=PRODUCER)) == ("EI007",)


def test_one_bad_transaction_rejects_the_whole_message_with_every_code() -> None:
    good = tx(engagement(P, categorization="dia"))
    bad = tx(engagement(P, content="yesterday", boi="x" * 200))
    assert _codes(update(good, bad)) == ("EI003",)  # field errors stop that transaction early
    assert _codes(update(good, tx(engagement(P, content="x")), tx(engagement("1", boi="b")))) == (
        "EI004", "EI005",
    )
