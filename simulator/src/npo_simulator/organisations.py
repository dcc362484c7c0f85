"""The simulated nation's care providers: 21 regions, 290 municipalities and a few private ones.

Which information categories each publishes reproduces the seed's coverage figure exactly
(design.md §5.3): the share of categories 1-11 per region, 3 of 11 (care plan, functional
status, notes) for 16 named municipalities, 2 of 11 (notes, functional status) for 7 more, and
none for the other municipalities, which only consume. Regions publish categories 1-11 in a
fixed roll-out order (most common first); the "coming" categories 12-17 are published by the
regions furthest along and by the private providers. HSA-ids are synthetic but well-formed:
``SE`` + a ten-digit organisation number with a valid Luhn digit + a suffix.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib.resources import files

from npo_platform.identifiers import luhn_check_digit

# The order in which a region publishes categories 1-11 (numbers of npo_platform.categories).
REGION_ROLL_OUT = (7, 1, 8, 4, 6, 2, 3, 5, 9, 10, 11)
# "Coming" categories a region publishes once it publishes at least this many of 1-11.
REGION_COMING = {12: 6, 13: 7, 14: 8, 16: 9}
MUNICIPAL_THREE = frozenset({8, 10, 11})  # notes, functional status, care plan
MUNICIPAL_TWO = frozenset({8, 10})  # notes, functional status

SEED_MUNICIPALITIES_THREE = (
    "Habo", "Haparanda", "Karlshamn", "Karlskrona", "Leksand", "Motala", "Nyköping", "Olofström",
    "Ronneby", "Sölvesborg", "Tierp", "Vadstena", "Varberg", "Västerås", "Ängelholm",
    "Örnsköldsvik",
)
SEED_MUNICIPALITIES_TWO = ("Höör", "Kinda", "Valdemarsvik", "Ydre", "Åtvidaberg", "Ödeshög", "Finspång")


class Kind(StrEnum):
    REGION = "region"
    MUNICIPALITY = "municipality"
    PRIVATE = "private"


# Each organisation's care units (a record names the unit that documented it): a kind of unit
# per number, followed by where it is (``Organisation.place``).
UNIT_KINDS = {
    Kind.REGION: ("Vårdcentralen", "Akutmottagningen", "Medicinkliniken", "Kirurgkliniken", "Klinisk kemi"),
    Kind.MUNICIPALITY: ("Hemsjukvården", "Särskilt boende", "Rehabiliteringen", "Korttidsboendet",
                        "Dagverksamheten"),
    Kind.PRIVATE: ("Mottagningen", "Laboratoriet", "Hemsjukvården", "Specialistmottagningen",
                   "Provtagningen"),
}
UNITS = 5


class SocialServices(StrEnum):
    """Where a municipality's social-services records (SoL) reach the national platform."""

    NONE = "none"  # kept in its own systems only (every municipality that publishes nothing)
    OWN_ADDRESS = "own_address"  # behind a logical address of their own (declared SoL in TAK),
    # served by the same record system (source system) as its health care
    MARKED = "marked"  # one record system for SoL and HSL: served with health care, each marked


SOCIAL_SERVICES_SERVED_AS = 8  # notes: the SoL journal's entries, as the producers serve them


@dataclass(frozen=True)
class Organisation:
    """A care giver with one record system (source system) at one logical address."""

    kind: Kind
    code: str  # county code, municipality code (SCB), or a slug for private providers
    name: str
    county: str  # two-digit county code of the region it lies in
    org_number: str  # ten digits, Luhn-valid
    publishes: frozenset[int]  # information category numbers it announces and serves
    inhabitants: int = 0  # regions only (approximate, 2023)
    social_services: SocialServices = SocialServices.NONE

    def hsa_id(self, suffix: str) -> str:
        return f"SE{self.org_number}-{suffix}"

    @property
    def care_giver(self) -> str:
        return self.hsa_id("VG")

    @property
    def logical_address(self) -> str:
        return self.hsa_id("LA")

    @property
    def source_system(self) -> str:
        return self.hsa_id("SYS")

    def care_unit(self, n: int) -> str:
        return self.hsa_id(f"VE{n:03d}")

    def care_unit_name(self, n: int) -> str:
        """``Medicinkliniken Östergötland``, ``Hemsjukvården Motala`` …"""
        return f"{UNIT_KINDS[self.kind][n - 1]} {self.place}"

    @property
    def place(self) -> str:
        """Its name without the kind of organisation: ``Östergötland``, ``Motala`` …"""
        return self.name.removeprefix("Region ").removesuffix(" kommun").removesuffix(" AB")

    @property
    def holds_social_services(self) -> bool:
        """Municipalities keep social-services records, which the overview must never show."""
        return self.kind is Kind.MUNICIPALITY

    @property
    def social_services_address(self) -> str | None:
        """The logical address of its social-services records, when they have one of their own."""
        return self.hsa_id("LASOL") if self.social_services is SocialServices.OWN_ADDRESS else None

    def serves(self, logical_address: str, category: int) -> bool:
        """Whether ``logical_address`` (one of its own) answers ``category``."""
        if logical_address == self.logical_address:
            return category in self.publishes
        return logical_address == self.social_services_address and category == SOCIAL_SERVICES_SERVED_AS

    @property
    def coverage_1_11(self) -> int:
        """Percent of categories 1-11 published, rounded half up as in the seed's figure."""
        return (200 * len(self.publishes & set(range(1, 12))) + 11) // 22


def _org_number(prefix: str) -> str:
    return prefix + str(luhn_check_digit(prefix))


def _rows(name: str) -> list[dict[str, str]]:
    text = files("npo_simulator.data").joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def region_publishes(count: int) -> frozenset[int]:
    coming = {category for category, needs in REGION_COMING.items() if count >= needs}
    return frozenset(REGION_ROLL_OUT[:count]) | coming


def _regions() -> list[Organisation]:
    return [
        Organisation(
            Kind.REGION, row["county"], row["name"], row["county"],
            _org_number(f"232100{row['county']}0"),
            region_publishes(int(row["published_of_11"])), int(row["inhabitants"]),
        )
        for row in _rows("regions.csv")
    ]


def _municipal_publishes(name: str) -> frozenset[int]:
    if name in SEED_MUNICIPALITIES_THREE:
        return MUNICIPAL_THREE
    return MUNICIPAL_TWO if name in SEED_MUNICIPALITIES_TWO else frozenset()


def _municipal_social_services(name: str) -> SocialServices:
    """The municipalities that publish health care also hand out their social-services records:
    the larger ones behind an address of their own, the smaller ones from one combined system."""
    if name in SEED_MUNICIPALITIES_THREE:
        return SocialServices.OWN_ADDRESS
    return SocialServices.MARKED if name in SEED_MUNICIPALITIES_TWO else SocialServices.NONE


def _municipalities() -> list[Organisation]:
    return [
        Organisation(
            Kind.MUNICIPALITY, row["code"], f"{row['name']} kommun", row["code"][:2],
            _org_number(f"21200{row['code']}"), _municipal_publishes(row["name"]),
            social_services=_municipal_social_services(row["name"]),
        )
        for row in _rows("municipalities.csv")
    ]


def _private() -> list[Organisation]:
    """Fictitious private providers, so categories 15 and 17 have producers too."""
    specs = (
        ("provlabbet", "Provlabbet AB", "01", "556000001", {4, 17}),
        ("exempelkliniken", "Exempelkliniken AB", "14", "556000002", {1, 7, 8, 15}),
        ("hemsjukvard-norr", "Hemsjukvård Norr AB", "25", "556000003", {8, 10, 11}),
    )
    return [
        Organisation(Kind.PRIVATE, slug, name, county, _org_number(prefix), frozenset(cats))
        for slug, name, county, prefix, cats in specs
    ]


@dataclass(frozen=True)
class Nation:
    """Every simulated organisation, with lookups."""

    organisations: tuple[Organisation, ...]

    def of_kind(self, kind: Kind) -> list[Organisation]:
        return [o for o in self.organisations if o.kind is kind]

    @property
    def producers(self) -> list[Organisation]:
        """Organisations that publish at least one category."""
        return [o for o in self.organisations if o.publishes]

    def by_name(self, name: str) -> Organisation:
        return next(o for o in self.organisations if o.name == name)

    def by_logical_address(self, address: str) -> Organisation | None:
        """The organisation at ``address`` (a social-services address included)."""
        return _address_index(self).get(address)

    @property
    def social_services_addresses(self) -> list[str]:
        return sorted(a for o in self.organisations if (a := o.social_services_address))

    def region_of(self, municipality: Organisation) -> Organisation:
        return next(r for r in self.of_kind(Kind.REGION) if r.county == municipality.county)

    def municipalities_in(self, county: str) -> list[Organisation]:
        return [m for m in self.of_kind(Kind.MUNICIPALITY) if m.county == county]


@cache
def _address_index(nation: Nation) -> dict[str, Organisation]:
    index = {o.logical_address: o for o in nation.organisations}
    return index | {a: o for o in nation.organisations if (a := o.social_services_address)}


@cache
def nation() -> Nation:
    """The simulated nation (loaded once)."""
    return Nation(tuple(_regions() + _municipalities() + _private()))


def names(organisations: Iterable[Organisation]) -> list[str]:
    return [o.name for o in organisations]
