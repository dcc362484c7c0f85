"""Records of the simulated population, looked up by patient (histories are rebuilt on demand)."""

from __future__ import annotations

from datetime import datetime
from functools import cached_property

from npo_simulator.organisations import Organisation, nation
from npo_simulator.population import Person, Population
from npo_simulator.records import Histories, Record


class RecordSource:
    """Answers "records of this patient at this producer" for a population of ``size``."""

    def __init__(self, size: int, seed: int) -> None:
        self.population = Population(size, seed)
        self.nation = nation()
        self.histories = Histories(self.nation, seed)
        self._live: dict[str, list[Record]] = {}  # records the running simulation added

    def add_live(self, records: list[Record]) -> None:
        for record in records:
            self._live.setdefault(record.patient_id, []).append(record)

    @cached_property
    def _people(self) -> dict[str, Person]:
        return {p.patient_id: p for p in self.population}

    @cached_property
    def people(self) -> list[Person]:
        return list(self._people.values())

    def load(self) -> RecordSource:
        """Build the lookup by patient now, not at the first request: for 100,000 people it
        takes seconds, and producers that slow on a first overview read as failed to it."""
        _ = self._people
        return self

    def person(self, patient_id: str) -> Person | None:
        return self._people.get(patient_id)

    def records(
        self, patient_id: str, org: Organisation, category: int,
        after: datetime | None = None, before: datetime | None = None, care_unit: str | None = None,
        *, address: str | None = None,
    ) -> list[Record]:
        """What ``org`` serves at ``address`` (default: its health-care address) in ``category``:
        announced records only, never another producer's. At a social-services address, or
        marked among the health-care records of a combined system, SoL records are served too."""
        person = self.person(patient_id)
        if person is None:
            return []
        at = address or org.logical_address
        return [
            r for r in [*self.histories.of(person), *self._live.get(patient_id, [])]
            if r.producer == org and r.logical_address == at and r.served_category == category
            and r.announced
            and (after is None or r.time >= after) and (before is None or r.time <= before)
            and (care_unit is None or r.care_unit == care_unit)
        ]

    def demo_patient(self, producers: int = 2) -> str:
        """The first person with readable records at ``producers`` organisations or more: the
        patient a demonstration or a test looks up to see several producers answer."""
        for person in self.population:
            if len({r.producer for r in self.histories.of(person) if not r.social_services}) >= producers:
                return person.patient_id
        raise LookupError(f"no one in the population has records at {producers} producers")
