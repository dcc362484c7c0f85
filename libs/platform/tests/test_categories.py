"""The information-category table of design.md §5.2."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from npo_platform.categories import (
    AVAILABLE_CATEGORIES,
    CATEGORIES,
    UnknownCategory,
    by_code,
    by_key,
    by_number,
    find_by_code,
)


def test_there_are_seventeen_categories_numbered_in_order() -> None:
    assert [c.number for c in CATEGORIES] == list(range(1, 18))


def test_keys_contracts_and_codes_are_unique() -> None:
    codes = [code for c in CATEGORIES for code in c.codes]

    assert len({c.key for c in CATEGORIES}) == 17
    assert len({c.contract for c in CATEGORIES}) == 17
    assert len(set(codes)) == len(codes) == 18  # category 10 has two categorizations


def test_categories_one_to_eleven_are_available_and_the_rest_are_coming() -> None:
    assert [c.number for c in AVAILABLE_CATEGORIES] == list(range(1, 12))
    assert all(not c.available for c in CATEGORIES if c.number >= 12)


def test_only_growth_forms_and_microbiology_are_project_defined() -> None:
    project_defined = [c for c in CATEGORIES if c.project_defined]

    assert [c.number for c in project_defined] == [12, 15, 17]
    assert all(c.service_domain.startswith("npo:") for c in project_defined)
    assert all(c.service_domain.startswith("riv:") for c in CATEGORIES if not c.project_defined)


def test_every_entry_is_complete() -> None:
    for category in CATEGORIES:
        assert category.name_sv
        assert category.name_en
        assert category.key.isidentifier()
        assert category.categorizations
        assert category.contract.startswith("Get")


def test_the_table_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CATEGORIES[0].key = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("number", "key", "service_domain", "categorizations", "contract"),
    [
        (1, "diagnoses", "riv:clinicalprocess:healthcond:description", ("dia",), "GetDiagnosis"),
        (2, "medications", "riv:clinicalprocess:activityprescription:actoutcome", ("caa-gmh",),
         "GetMedicationHistory"),
        (4, "laboratory", "riv:clinicalprocess:healthcond:actoutcome", ("und-kkm-ure",),
         "GetLaboratoryOrderOutcome"),
        (7, "care_contacts", "riv:clinicalprocess:logistics:logistics", ("vko",),
         "GetCareContacts"),
        (10, "functional_status", "riv:clinicalprocess:healthcond:description",
         ("fun-fun", "pad-pad"), "GetFunctionalStatus"),
        (11, "care_plans", "riv:clinicalprocess:logistics:logistics", ("cll-cp",),
         "GetCarePlans"),
        (12, "growth", "npo:clinicalprocess:healthcond:growth", ("npo-gro",),
         "GetGrowthMeasurements"),
        (14, "referral_flow", "riv:crm:requeststatus", ("req-act",), "GetRequestActivities"),
        (16, "ecg", "riv:clinicalprocess:healthcond:actoutcome", ("und-ekg-ure",),
         "GetECGOutcome"),
    ],
)  # fmt: skip
def test_lookups_agree(
    number: int, key: str, service_domain: str, categorizations: tuple[str, ...], contract: str
) -> None:
    category = by_number(number)

    assert (category.key, category.service_domain) == (key, service_domain)
    assert (category.categorizations, category.contract) == (categorizations, contract)
    assert by_key(key) is category
    for categorization in categorizations:
        assert by_code(service_domain, categorization) is category
        assert find_by_code(service_domain, categorization) is category


@pytest.mark.parametrize(
    "lookup",
    [
        lambda: by_number(0),
        lambda: by_number(18),
        lambda: by_key("Diagnoses"),
        lambda: by_code("riv:clinicalprocess:healthcond:description", "vko"),  # wrong domain
        lambda: by_code("riv:clinicalprocess:healthcond:description", "DIA"),
    ],
)
def test_unknown_lookups_raise_with_a_stable_code(lookup: Callable[[], object]) -> None:
    with pytest.raises(UnknownCategory) as caught:
        lookup()

    assert caught.value.code == "category.unknown"
    assert isinstance(caught.value, LookupError)


def test_find_by_code_returns_none_for_unknown_pairs() -> None:
    assert find_by_code("riv:social:services", "dia") is None
