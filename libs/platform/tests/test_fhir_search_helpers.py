"""FHIR search helpers: date parameters at their precision, patients by HL7 Sweden's systems."""

from __future__ import annotations

from datetime import datetime

import pytest

from npo_platform.fhir import PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM
from npo_platform.fhir_search import LOCAL_ZONE, SearchError, date_bound, patient_id, token

PNR = "191212121212"


def _at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=LOCAL_ZONE)


def test_a_date_holds_the_instants_of_its_precision_in_swedish_time() -> None:
    day = date_bound("2024-05-03")
    assert day.holds(_at(2024, 5, 3, 0, 0))
    assert day.holds(_at(2024, 5, 3, 23, 59, 59))
    assert not day.holds(_at(2024, 5, 4))
    assert date_bound("ge2024-05").holds(_at(2024, 12, 31))
    assert not date_bound("gt2024-05").holds(_at(2024, 5, 31, 12))
    assert date_bound("lt2024").holds(_at(2023, 12, 31, 23, 59))
    assert not date_bound("le2024-05-03T10:15").holds(_at(2024, 5, 3, 10, 16))
    assert date_bound("2024-05-03T08:15:00Z").holds(_at(2024, 5, 3, 10, 15))  # CEST is UTC+2


@pytest.mark.parametrize(("value", "code"), [
    ("2024-13", "search.date_invalid"), ("yesterday", "search.date_invalid"),
    ("ne2024", "search.date_prefix_unsupported")])
def test_a_date_it_cannot_use_is_refused(value: str, code: str) -> None:
    with pytest.raises(SearchError) as refused:
        date_bound(value)
    assert refused.value.code == code


def test_a_patient_is_named_by_hl7_swedens_systems_and_only_by_its_own() -> None:
    assert patient_id(PNR) == patient_id(f"{PERSONNUMMER_SYSTEM}|{PNR}") == PNR
    for value, code in ((f"{SAMORDNINGSNUMMER_SYSTEM}|{PNR}", "search.patient_system_mismatch"),
                        (f"urn:oid:1.2.752.129.2.1.3.1|{PNR}", "search.system_unsupported"),
                        ("191212121213", "search.patient_invalid")):
        with pytest.raises(SearchError) as refused:
            patient_id(value)
        assert refused.value.code == code
        assert PNR not in refused.value.detail
    assert token("a|b", frozenset({"a"})) == "b"
