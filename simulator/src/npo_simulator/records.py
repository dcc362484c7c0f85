"""Care histories: deterministic journal records per person, across regions, municipalities, private care.

Each person's history comes from a generator seeded by (seed, person index), so any one history
can be rebuilt alone. Elderly patients move between a regional hospital stay and municipal home
care (care plan, functional status, notes) after discharge, as the seed describes; children get
vaccinations and growth measurements; some women maternity records; a few people use the
private clinic, laboratory or home-care provider. A record exists only where its organisation
publishes the category, except municipal social-services records (socialtjänst, SoL). As in a
real nation, the municipalities that publish health care also hand out their SoL records: the
larger ones behind a logical address of their own (the routing table declares it SoL), the
smaller ones from one combined system at their health-care address, each SoL record marked
(``socialServices`` in its header); the overview must show neither. The other municipalities'
SoL records never leave them. Records of a patient with a protected identity carry the address,
phone, relatives and location that the overview must never release.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from npo_simulator.organisations import (
    SOCIAL_SERVICES_SERVED_AS,
    UNITS,
    Kind,
    Nation,
    Organisation,
    SocialServices,
)
from npo_simulator.population import REFERENCE_DATE, Person

HISTORY_YEARS = 5
SOCIAL_SERVICES = 0  # category number used for social-services records (not an NPO category)

OUTPATIENT = (7, 8, 1, 4, 2)
HOSPITAL_STAY = (7, 1, 8, 4, 3, 2, 6, 5, 16, 14)
HOME_CARE = (11, 10, 8)


@dataclass(frozen=True)
class Record:
    """One journal record at one producer."""

    record_id: str
    patient_id: str
    producer: Organisation
    category: int  # npo_platform.categories number, or SOCIAL_SERVICES
    care_unit: str
    time: datetime
    variant: int  # picks the sample content (see content.py)
    protected_identity: bool = False  # the patient's; the record carries contact details

    @property
    def social_services(self) -> bool:
        return self.category == SOCIAL_SERVICES

    @property
    def announced(self) -> bool:
        """Whether the producer announces and serves it (SoL records only where handed out)."""
        return not self.social_services or self.producer.social_services is not SocialServices.NONE

    @property
    def logical_address(self) -> str:
        if self.social_services and self.producer.social_services_address:
            return self.producer.social_services_address
        return self.producer.logical_address

    @property
    def served_category(self) -> int:
        """The information category it is announced and served in."""
        return SOCIAL_SERVICES_SERVED_AS if self.social_services else self.category


class Histories:
    """Builds the care history of any person of a population."""

    def __init__(self, country: Nation, seed: int = 1) -> None:
        self.nation = country
        self.seed = seed
        private = country.of_kind(Kind.PRIVATE)
        self._clinic, self._lab, self._home_care = private[1], private[0], private[2]

    def of(self, person: Person) -> list[Record]:
        """The person's records, oldest first (same list every time)."""
        rng = random.Random(f"npo-care:{self.seed}:{person.index}")
        plan = _Plan(person, rng)
        region = self.nation.region_of(person.home)
        for _ in range(rng.randint(0, 3)):
            plan.episode(region, OUTPATIENT[: rng.randint(1, len(OUTPATIENT))])
        if person.age < 18:
            plan.episode(region, (9, 12))
        if person.female and 20 <= person.age <= 40 and rng.random() < 0.15:
            plan.episode(region, (13, 8, 7))
        if person.age >= 75 and rng.random() < 0.6:
            stay = plan.episode(region, HOSPITAL_STAY[: rng.randint(3, len(HOSPITAL_STAY))])
            plan.episode(person.home, (*HOME_CARE, SOCIAL_SERVICES), after=stay)
            if person.home.county == self._home_care.county and rng.random() < 0.3:
                plan.episode(self._home_care, HOME_CARE, after=stay)
        if rng.random() < 0.05:
            plan.episode(self._clinic, (7, 1, 8, 15))
        if rng.random() < 0.1:
            plan.episode(self._lab, (4, 17))
        return sorted(plan.records, key=lambda r: (r.time, r.record_id))


    def new_episode(self, person: Person, rng: random.Random, at: datetime, serial: int) -> list[Record]:
        """Records of one new care event happening ``at`` (the live stream of ``npo simulate``)."""
        plan = _Plan(person, rng, prefix=f"live{serial}")
        if person.age >= 75 and rng.random() < 0.5:
            plan.episode(person.home, (*HOME_CARE, SOCIAL_SERVICES), at=at)
        else:
            region = self.nation.region_of(person.home)
            plan.episode(region, OUTPATIENT[: rng.randint(1, len(OUTPATIENT))], at=at)
        return plan.records


class _Plan:
    """Collects one person's records episode by episode."""

    def __init__(self, person: Person, rng: random.Random, prefix: str = "") -> None:
        self.person, self.rng, self.prefix = person, rng, prefix
        self.records: list[Record] = []

    def episode(
        self, org: Organisation, categories: tuple[int, ...], *, after: datetime | None = None,
        at: datetime | None = None,
    ) -> datetime:
        """Records of one visit or stay at ``org``; returns when it ended."""
        start = at or self._when(after)
        unit = org.care_unit(self.rng.randint(1, UNITS))
        for offset, category in enumerate(categories):
            if category in org.publishes or (category == SOCIAL_SERVICES and org.holds_social_services):
                spread = timedelta(hours=offset * self.rng.randint(1, 12))
                self._add(org, category, unit, start if at else start + spread)
        return start + timedelta(days=self.rng.randint(1, 14))

    def _when(self, after: datetime | None) -> datetime:
        if after is not None:
            return after + timedelta(hours=self.rng.randint(2, 72))
        days_back = self.rng.randint(0, 365 * HISTORY_YEARS)
        minutes = self.rng.randint(7 * 60, 19 * 60)
        day = REFERENCE_DATE - timedelta(days=days_back)
        return datetime.combine(day, time()) + timedelta(minutes=minutes)

    def _add(self, org: Organisation, category: int, unit: str, at: datetime) -> None:
        n = len(self.records)
        record_id = f"{org.code}-{self.person.index}-{self.prefix}{n}"
        variant = self.rng.randint(0, 1_000_000)
        self.records.append(Record(record_id, self.person.patient_id, org, category, unit, at,
                                   variant, self.person.protected_identity))
