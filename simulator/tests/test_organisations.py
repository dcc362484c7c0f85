"""The simulated nation reproduces the seed's coverage figure (design.md §5.3) exactly."""

from __future__ import annotations

import pytest

from npo_platform.identifiers import HsaId
from npo_simulator.organisations import Kind, nation

REGION_SHARES = {
    "Region Östergötland": 82, "Region Blekinge": 73, "Region Jönköpings län": 64,
    **dict.fromkeys((
        "Region Dalarna", "Region Jämtland Härjedalen", "Region Kronoberg", "Region Norrbotten",
        "Region Skåne", "Region Värmland", "Region Västerbotten", "Region Västernorrland",
        "Region Stockholm", "Region Örebro län"), 55),
    **dict.fromkeys(("Region Halland", "Region Kalmar län", "Västra Götalandsregionen",
                     "Region Uppsala"), 45),
    **dict.fromkeys(("Region Gotland", "Region Gävleborg", "Region Sörmland",
                     "Region Västmanland"), 36),
}
MUNICIPAL_27 = ("Habo", "Haparanda", "Karlshamn", "Karlskrona", "Leksand", "Motala", "Nyköping",
                "Olofström", "Ronneby", "Sölvesborg", "Tierp", "Vadstena", "Varberg", "Västerås",
                "Ängelholm", "Örnsköldsvik")
MUNICIPAL_18 = ("Höör", "Kinda", "Valdemarsvik", "Ydre", "Åtvidaberg", "Ödeshög", "Finspång")


def test_sizes() -> None:
    assert len(nation().of_kind(Kind.REGION)) == 21
    assert len(nation().of_kind(Kind.MUNICIPALITY)) == 290
    assert 1 <= len(nation().of_kind(Kind.PRIVATE)) <= 5


@pytest.mark.parametrize(("region", "share"), sorted(REGION_SHARES.items()))
def test_region_coverage(region: str, share: int) -> None:
    assert nation().by_name(region).coverage_1_11 == share


@pytest.mark.parametrize("name", MUNICIPAL_27)
def test_municipalities_with_three_categories(name: str) -> None:
    org = nation().by_name(f"{name} kommun")
    assert org.coverage_1_11 == 27
    assert org.publishes == {8, 10, 11}  # notes, functional status, care plan


@pytest.mark.parametrize("name", MUNICIPAL_18)
def test_municipalities_with_two_categories(name: str) -> None:
    assert nation().by_name(f"{name} kommun").coverage_1_11 == 18


def test_every_other_municipality_only_consumes() -> None:
    named = {f"{n} kommun" for n in MUNICIPAL_27 + MUNICIPAL_18}
    others = [m for m in nation().of_kind(Kind.MUNICIPALITY) if m.name not in named]
    assert len(others) == 290 - 23
    assert all(not m.publishes for m in others)


def test_all_17_categories_have_a_producer() -> None:
    published = set().union(*(o.publishes for o in nation().organisations))
    assert published == set(range(1, 18))


def test_identifiers_are_valid_and_unique() -> None:
    orgs = nation().organisations
    ids = [i for o in orgs for i in (o.care_giver, o.logical_address, o.source_system, o.care_unit(1))]
    assert all(HsaId.parse(i) for i in ids)
    assert len(set(ids)) == len(ids)
