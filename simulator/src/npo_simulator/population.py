"""A deterministic synthetic population: valid personnummer/samordningsnummer, home municipality.

The same seed and size always give the same people in the same order. People are generated
one after another from one seeded generator, so a run of millions needs no more memory than the
per-date serial counters (a serial is never reused within a birth date and sex, which keeps
every number unique). Residents are spread over the regions in proportion to their approximate
inhabitants, and evenly over each region's municipalities (the simulator has no per-municipality
head counts).
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from npo_platform.identifiers import make_personnummer
from npo_simulator.organisations import Kind, Nation, Organisation, nation

REFERENCE_DATE = date(2026, 11, 1)  # "today" of the simulation: fixed, so output is stable
PROTECTED_PER_MILLE = 5  # people with a protected identity (skyddad folkbokföring), about 0.5 %
COORDINATION_SHARE = 0.01  # samordningsnummer (people not registered as residents)
# Age bands (years, inclusive) and their share of the population, close to Sweden's pyramid.
AGE_BANDS = ((0, 19, 0.22), (20, 39, 0.26), (40, 64, 0.31), (65, 79, 0.15), (80, 100, 0.06))


@dataclass(frozen=True)
class Person:
    """One synthetic patient. ``patient_id`` is the 12-digit number used on the wire."""

    index: int
    patient_id: str
    birth_date: date
    female: bool
    home: Organisation  # municipality

    @property
    def protected_identity(self) -> bool:
        """Whether the person has a protected identity: a stable function of the number (no
        draw from the population's generator, so every other person stays the same)."""
        return zlib.crc32(self.patient_id.encode()) % 1000 < PROTECTED_PER_MILLE

    @property
    def age(self) -> int:
        born, today = self.birth_date, REFERENCE_DATE
        return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


class Population:
    """Iterates the ``size`` people of ``seed``; iterating again gives the same people."""

    def __init__(self, size: int = 100_000, seed: int = 1, country: Nation | None = None) -> None:
        if size < 0:
            raise ValueError("size must not be negative")
        self.size = size
        self.seed = seed
        self.nation = country or nation()
        self._regions = self.nation.of_kind(Kind.REGION)
        self._weights = [r.inhabitants for r in self._regions]

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[Person]:
        rng = random.Random(f"npo-population:{self.seed}")
        serials: Counter[tuple[date, bool, bool]] = Counter()
        for index in range(self.size):
            yield self._person(index, rng, serials)

    def _person(
        self, index: int, rng: random.Random, serials: Counter[tuple[date, bool, bool]]
    ) -> Person:
        born = _birth_date(rng)
        female = rng.random() < 0.5
        coordination = rng.random() < COORDINATION_SHARE
        count = serials[(born, female, coordination)]
        if count >= 500:  # 500 odd and 500 even serials per date: never reached below ~18M people
            raise OverflowError("too many people born on one date for unique serials")
        serials[(born, female, coordination)] += 1
        serial = 2 * count + (0 if female else 1)  # the ninth digit's parity encodes sex
        number = make_personnummer(born, serial, coordination=coordination)
        return Person(index, number, born, female, self._home(rng))

    def _home(self, rng: random.Random) -> Organisation:
        region = rng.choices(self._regions, weights=self._weights)[0]
        return rng.choice(self.nation.municipalities_in(region.county))


def _birth_date(rng: random.Random) -> date:
    low, high, _ = rng.choices(AGE_BANDS, weights=[b[2] for b in AGE_BANDS])[0]
    age_days = rng.randint(low * 365, high * 365 + 364)
    return REFERENCE_DATE - timedelta(days=age_days)
