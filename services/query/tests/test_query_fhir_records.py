"""Every category's records as FHIR, checked by HAPI FHIR's validator: the simulated producers'
bodies, the RIV-TA contracts' shapes, categories no simulated producer publishes yet, and
records without a body at all."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from query_fixtures import SOURCE

from npo_deploy.fhir_validator import FhirValidator
from npo_platform.categories import CATEGORIES, by_number
from npo_platform.fhir import patient_reference
from npo_query.domain import Record
from npo_query.fhir_records import ByIdentifier, identity_of, resource_of
from npo_query.fhir_types import FHIR_TYPES
from npo_simulator import records as simulated
from npo_simulator.content import document

PATIENT = SOURCE.people[0].patient_id
# The bodies of the national read contracts where this project speaks them (npo_rivta.records).
RIV_BODIES: dict[str, dict[str, Any]] = {
    "laboratory": {"resultattyp": {"code": "DEF"}, "svarsgrupp": {"utfordAnalys": {
        "analys": {"code": "B-Hb"},
        "analysresultat": {"resultatMatvarde": {"value": "128", "unit": "g/L"}}}}},
    "notes": {"clinicalDocumentNote": {"clinicalDocumentNoteTitle": "Epikris",
                                       "clinicalDocumentNoteText": "…"}},
    "alerts": {"alertInformationBody": {
        "typeOfAlertInformation": {"code": "ÖK", "displayName": "Överkänslighet"},
        "hypersensitivity": {"typeOfHypersensitivity": "Läkemedel"}}},
}


def _record(category: str, body: dict[str, Any] | None, n: int) -> Record:
    header = {"documentId": f"doc-{category}-{n}", "sourceSystemHSAId": "SE2321000016-SYS1",
              "patientId": {"id": PATIENT}}
    document_ = {"header": header} if body is None else {"header": header, "body": body}
    return Record(f"doc-{category}-{n}", "SE2321000016-SYS1", f"2026110{n % 9 + 1}101500", category,
                  "SE2321000016-LA01", document_, "SE2321000016-CG01", "SE2321000016-CU01" if n % 2 else "")


def _simulated() -> list[Record]:
    """One record per category and content variant, as the simulated producers answer them (a
    category no producer publishes yet borrows another record's header)."""
    found: dict[tuple[int, int], Record] = {}
    for person in SOURCE.people[:3000]:
        for made in SOURCE.histories.of(person):
            key = (made.category, made.variant % 6)
            if not made.social_services and key not in found:
                found[key] = _from(made)
    any_record = next(iter(SOURCE.histories.of(SOURCE.people[0])))
    for category in CATEGORIES:
        if not any(number == category.number for number, _ in found):
            found[(category.number, 0)] = _from(replace(any_record, category=category.number))
    return list(found.values())


def _from(made: simulated.Record) -> Record:
    answered = document(made)
    professional = answered["header"]["accountableHealthcareProfessional"]
    return Record(made.record_id, made.producer.source_system, professional["authorTime"],
                  by_number(made.category).key, made.producer.logical_address, answered,
                  made.producer.care_giver, made.care_unit)


def _all_records() -> list[Record]:
    odd = [_record(c.key, None, n) for n, c in enumerate(CATEGORIES)]  # no body at all
    riv = [_record(key, body, n) for n, (key, body) in enumerate(RIV_BODIES.items())]
    return [*_simulated(), *odd, *riv]


def test_every_categorys_records_render_as_valid_fhir_of_its_type(fhir_validator: FhirValidator) -> None:
    refs = ByIdentifier(patient_reference(PATIENT))
    rendered: set[str] = set()
    for record in _all_records():
        resource = resource_of(record, refs)
        assert [str(i) for i in fhir_validator.errors(resource)] == [], (record.category, resource)
        assert identity_of(resource) == record.identity
        [kind] = [t for t in FHIR_TYPES.values() if t.holds(record)]  # exactly one type holds it
        assert resource["resourceType"] == kind.name
        rendered.add(resource["resourceType"])
    assert rendered == set(FHIR_TYPES)

