"""The synthetic population is deterministic, valid, unique and shaped like Sweden's."""

from __future__ import annotations

from collections import Counter

from npo_platform.identifiers import PatientId, PatientIdKind
from npo_simulator.organisations import Kind, nation
from npo_simulator.population import Population
from npo_simulator.records import Histories

SIZE = 20_000


def test_same_seed_same_people_other_seed_other_people() -> None:
    first = [p.patient_id for p in Population(2_000, seed=7)]
    assert first == [p.patient_id for p in Population(2_000, seed=7)]
    assert first != [p.patient_id for p in Population(2_000, seed=8)]


def test_numbers_are_valid_unique_and_mostly_personnummer() -> None:
    people = list(Population(SIZE, seed=3))
    ids = [PatientId.parse(p.patient_id) for p in people]
    assert len({i.value for i in ids}) == SIZE
    kinds = Counter(i.kind for i in ids)
    assert 0.005 < kinds[PatientIdKind.SAMORDNINGSNUMMER] / SIZE < 0.02
    assert all(i.birth_date == p.birth_date for i, p in zip(ids, people, strict=True))


def test_sex_digit_and_age_shape() -> None:
    people = list(Population(SIZE, seed=3))
    assert all((int(p.patient_id[10]) % 2 == 0) == p.female for p in people)
    elderly = sum(p.age >= 80 for p in people) / SIZE
    children = sum(p.age < 20 for p in people) / SIZE
    assert 0.04 < elderly < 0.08
    assert 0.19 < children < 0.25


def test_homes_follow_region_size() -> None:
    people = list(Population(SIZE, seed=3))
    assert all(p.home.kind is Kind.MUNICIPALITY for p in people)
    stockholm = sum(p.home.county == "01" for p in people) / SIZE
    gotland = sum(p.home.county == "09" for p in people) / SIZE
    assert 0.2 < stockholm < 0.27
    assert gotland < 0.01


def test_histories_are_deterministic_and_move_between_care_givers() -> None:
    people = list(Population(3_000, seed=5))
    first = Histories(nation(), 5)
    again = Histories(first.nation, 5)
    assert [first.of(p) for p in people[:200]] == [again.of(p) for p in people[:200]]
    elderly = [p for p in people if p.age >= 75]
    both = {Kind.REGION, Kind.MUNICIPALITY}
    moved = [p for p in elderly if {r.producer.kind for r in first.of(p)} >= both]
    assert moved, "some elderly patients have both hospital and municipal home-care records"
    for person in moved:
        history = first.of(person)
        hospital = min(r.time for r in history if r.producer.kind is Kind.REGION and r.category == 7)
        home_care = [r for r in history if r.producer.kind is Kind.MUNICIPALITY]
        assert any(r.time > hospital for r in home_care)
    assert any(r.social_services for p in elderly for r in first.of(p)), "social services exist"
