"""Every category's records as FHIR, checked by HAPI FHIR's validator: the simulated producers'
bodies, the RIV-TA contracts' shapes, categories no simulated producer publishes yet, and
records without a body at all; the IPS document of them and of nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from query_fixtures import SOURCE, clinician

from npo_deploy.fhir_checks import ips_problems
from npo_deploy.fhir_validator import FhirValidator
from npo_platform.categories import CATEGORIES, by_number
from npo_platform.fhir import patient_reference
from npo_platform.identity import Claims, Role
from npo_query.domain import Outcome, Record, Status, Target, TargetResult, told_of
from npo_query.fhir_ips import IPS_CATEGORIES, summary
from npo_query.fhir_records import ByIdentifier, identity_of, resource_of
from npo_query.fhir_types import FHIR_TYPES
from npo_query.service import Overview, Reading
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


def test_the_contracts_bodies_give_the_resources_their_names_and_codes() -> None:
    """The simulated producers answer the national contracts' bodies: each field a resource has a
    place for is found there, not replaced by the category's name (ECG's body, carried whole,
    has no title)."""
    named = ("Condition", "MedicationStatement", "DiagnosticReport", "ServiceRequest",
             "AllergyIntolerance", "Flag", "Encounter", "Immunization")
    refs = ByIdentifier(patient_reference(PATIENT))
    texts: dict[str, set[str]] = {}
    for record in _simulated():
        resource = resource_of(record, refs)
        if resource["resourceType"] not in named or record.category == "ecg":
            continue
        concept_ = (resource.get("code") or resource.get("medicationCodeableConcept")
                    or resource.get("vaccineCode") or resource["type"][0])
        texts.setdefault(resource["resourceType"], set()).add(concept_["text"])
        if resource["resourceType"] in ("Condition", "Immunization"):
            assert concept_["coding"][0]["code"], resource
        if resource["resourceType"] == "MedicationStatement":
            assert resource["dosage"][0]["text"], resource
        if resource["resourceType"] == "Encounter":
            assert resource["class"]["code"] == "AMB", resource
    category_names = {c.name_sv for c in CATEGORIES}
    assert {kind: found & category_names for kind, found in texts.items() if kind in named} == {
        kind: set() for kind in named}


@pytest.mark.parametrize("with_records", [True, False], ids=["records", "nothing"])
def test_the_summary_is_a_valid_ips_document(fhir_validator: FhirValidator, with_records: bool) -> None:
    records = [r for r in _all_records() if r.category in IPS_CATEGORIES] if with_records else []
    failed = TargetResult(Target("SE2321000016-LA02", "medications", "SE2321000016-CG02"),
                          Status.NO_DATA_SYNCH_FAILED, "timeout")
    blocked = TargetResult(Target("SE2321000016-LA03", "diagnoses", "SE2321000016-CG03"),
                           Status.WITHHELD_BY_DECISION, "blocked")
    claims = Claims(sub="SE2321000016-A1B2", name="Anna", roles=frozenset({Role.CLINICIAN}), iss="npo",
                    aud="npo", iat=0, exp=0, jti="t", care_unit="SE2321000016-U001",
                    care_giver="SE2321000016-G001", assignment="A1", purpose="care")
    reading = Reading(claims, clinician()["Authorization"], PATIENT, IPS_CATEGORIES)
    found = Overview(reading, Outcome.PARTIAL, "consent", "blocked", True, False, (), 2,
                     told_of([failed, blocked]), records, "0b0a4d8e-6c4e-4f67-9a35-3e8e7f3c2b10")
    document_ = summary(found, datetime.now(UTC))
    assert [str(i) for i in fhir_validator.errors(document_)] == []
    assert ips_problems(document_) == []
    sections = {s["code"]["coding"][0]["code"]: s for s in document_["entry"][0]["resource"]["section"]}
    assert ("entry" in sections["11450-4"]) == with_records
    if not with_records:  # why a required section is empty; a block is told once, of the document
        assert sections["10160-0"]["emptyReason"]["coding"][0]["code"] == "unavailable"
        assert sections["11450-4"]["emptyReason"]["coding"][0]["code"] == "unavailable"
    assert "SE2321000016-LA03" not in str(document_)
    assert "Blocked information exists" in str(sections["sources"])
