"""The overview's records as FHIR R4 resources (plain JSON dicts, checked by HAPI's validator in
the tests; no I/O).

Every information category has one natural resource type (``FHIR_TYPES`` in fhir_types.py);
alerts have two: a hypersensitivity is an AllergyIntolerance, any other alert a Flag. A record
becomes exactly one resource: its ``id`` is derived from the record's identity (documentId and
source system), so the same record has the same id in every answer, and its ``identifier`` gives
that identity back. A category without a structured body becomes a DocumentReference whose
attachment is the producer's body as it came (after the access law), so nothing is lost.

The producers' bodies are RIV-TA-shaped JSON; fields are looked for where the contracts put them
and a record that lacks one still renders (its text from the category's name): a producer's odd
record must never make the whole answer fail.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from npo_platform.categories import by_key
from npo_platform.fhir import Resource, coding, concept, hsa_identifier
from npo_platform.fhir_search import LOCAL_ZONE

from .domain import Record

NPO_CATEGORY = "urn:npo:information-category"  # meta.tag: the record's information category
DOCUMENT_ID = "urn:npo:document:"  # + the source system's HSA-id: the record's documentId
ICD_10_SE = "urn:oid:1.2.752.116.1.1.1.1.3"  # Socialstyrelsen's ICD-10-SE, as RIV-TA names it
ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
VITAL_SIGNS_PROFILE = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
_IDS = uuid.UUID("8f3c2a64-1d7e-4c52-b0a9-5e6d7c8b9a10")  # namespace of the records' resource ids
# Growth measurements (the project's own category 12) as LOINC vital signs.
_GROWTH = {"weight": ("29463-7", "Body weight"), "length": ("8302-2", "Body height"),
           "headCircumference": ("9843-4", "Head Occipital-frontal circumference")}
_UCUM_CODES = {"µmol/L": "umol/L", "µg/L": "ug/L"}  # UCUM's case-sensitive codes, where they differ
# GetCareContacts' careContactCode (1 besök, 2 vårdtillfälle, 3 vårdtjänst, 4 hemsjukvård).
_CONTACT_CLASS = {"1": ("AMB", "ambulatory"), "2": ("IMP", "inpatient encounter"),
                  "4": ("HH", "home health")}
_ENCOUNTER_CLASS = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


class References(Protocol):
    """How a resource names the patient and a care unit: by identifier in a search answer (this
    server keeps no Patient or Organization), by the entry's fullUrl inside a document."""

    def patient(self) -> Resource: ...

    def organization(self, hsa_id: str) -> Resource: ...


class ByIdentifier:
    def __init__(self, patient: Resource) -> None:
        self._patient = patient

    def patient(self) -> Resource:
        return self._patient

    def organization(self, hsa_id: str) -> Resource:
        return {"type": "Organization", "identifier": hsa_identifier(hsa_id)}


def resource_id(record: Record) -> str:
    return str(uuid.uuid5(_IDS, f"{record.source_system}\x1f{record.document_id}"))


def identity_of(resource: Resource) -> tuple[str, str]:
    """(documentId, source system) of a resource built here: the record it came from."""
    found = resource["identifier"][0]
    return str(found["value"]), str(found["system"]).removeprefix(DOCUMENT_ID)


def moment(stamp: str) -> datetime:
    """yyyyMMddHHmmss (Swedish time) as an aware datetime."""
    return datetime(int(stamp[0:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[8:10]),
                    int(stamp[10:12]), int(stamp[12:14]), tzinfo=LOCAL_ZONE)


def fhir_time(stamp: str) -> str:
    """yyyyMMddHHmmss (Swedish time) as a FHIR dateTime with its offset."""
    return moment(stamp).isoformat()


def is_hypersensitivity(record: Record) -> bool:
    """An alert about a hypersensitivity (RIV-TA's ``hypersensitivity`` part, or its type)."""
    alert = _alert_body(record)
    if alert.get("hypersensitivity"):
        return True
    return _text(alert.get("typeOfAlertInformation")).lower().startswith("överkänslighet")


def resource_of(record: Record, refs: References) -> Resource:
    """The record as its category's resource."""
    if record.category == "alerts":
        return _allergy(record, refs) if is_hypersensitivity(record) else _flag(record, refs)
    return _BUILDERS.get(record.category, _document)(record, refs)


def category_coding(key: str) -> Resource:
    """An information category as a coding of this project's system, with its Swedish name."""
    category = by_key(key)
    return coding(NPO_CATEGORY, category.key, category.name_sv)


def _common(kind: str, record: Record) -> Resource:
    return {"resourceType": kind, "id": resource_id(record),
            "meta": {"tag": [category_coding(record.category)]},
            "identifier": [{"system": f"{DOCUMENT_ID}{record.source_system}",
                            "value": record.document_id}]}


def _body(record: Record) -> dict[str, Any]:
    body = record.document.get("body")
    return body if isinstance(body, dict) else {}


def _at(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _text(value: Any) -> str:
    """A field's text: itself, or a coded value's displayName (else its originalText, code)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict):
        return _text(value.get("displayName") or value.get("originalText") or value.get("code")
                     or value.get("name"))
    return ""


def _code(value: Any) -> str:
    """A coded value's code (RIV-TA's CVType), or the field itself when it is a plain code."""
    return _text(value.get("code") if isinstance(value, dict) else value)


def _title(record: Record, *found: Any) -> str:
    """The first non-empty text of ``found``, else what the body says of itself or the category."""
    for value in (*found, _body(record).get("description")):
        if text := _text(value):
            return text
    return by_key(record.category).name_sv


def _units(record: Record, refs: References) -> list[Resource]:
    return [refs.organization(record.care_unit)] if record.care_unit else []


def _condition(record: Record, refs: References) -> Resource:
    diagnosis = _at(_body(record), "diagnosisCode") or {}
    name = _title(record, _at(diagnosis, "displayName"))
    code: Resource = {"text": name}
    system = _text(_at(diagnosis, "codeSystem"))
    if _text(_at(diagnosis, "code")) and system in ("ICD-10-SE", ICD_10_SE.removeprefix("urn:oid:")):
        code = concept(ICD_10_SE, _text(diagnosis["code"]), name, name)
    return {**_common("Condition", record),
            "category": [concept(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")],
            "code": code, "subject": refs.patient(), "recordedDate": fhir_time(record.author_time)}


def _medication(record: Record, refs: References) -> Resource:
    prescription = _at(_body(record), "medicationPrescription") or {}
    status = _text(_at(prescription, "prescriptionStatus")).lower()
    found = {**_common("MedicationStatement", record),
             "status": status if status in ("active", "completed", "stopped") else "unknown",
             "medicationCodeableConcept": {"text": _title(
                 record, _at(prescription, "drug", "name"),
                 _at(prescription, "drug", "unstructuredDrugInformation", "unstructuredInformation"))},
             "subject": refs.patient(), "effectiveDateTime": fhir_time(record.author_time)}
    if record.care_unit:
        found["informationSource"] = refs.organization(record.care_unit)
    if dosage := _text(_at(prescription, "dosageInstruction")
                       or _at(prescription, "dosage", "dosageInstruction")):
        found["dosage"] = [{"text": dosage}]
    return found


def _report(record: Record, refs: References) -> Resource:
    service = ("EC", "Electrocardiac") if record.category == "ecg" else ("RAD", "Radiology")
    body = _body(record)
    found = {**_common("DiagnosticReport", record), "status": "final",
             "category": [concept(DIAGNOSTIC_SERVICE, *service)],
             "code": {"text": _title(record, body.get("examinationSpeciality"))},
             "subject": refs.patient(), "effectiveDateTime": fhir_time(record.author_time),
             "issued": fhir_time(record.author_time)}
    if record.care_unit:
        found["performer"] = _units(record, refs)
    if conclusion := _text(body.get("resultReport")):
        found["conclusion"] = conclusion
    return found


def _observation(record: Record, refs: References) -> Resource:
    """A laboratory result, or a growth measurement (a LOINC vital sign when its kind is known)."""
    body = _body(record)
    growth = _at(body, "growthMeasurement")
    vital = record.category == "growth" and isinstance(growth, dict) and growth.get("kind") in _GROWTH
    if vital:
        loinc, name = _GROWTH[growth["kind"]]
        code, measured = concept(LOINC, loinc, name, name), growth
    else:
        analysis = _at(body, "analysis") or _at(body, "svarsgrupp", "utfordAnalys", "analys") or {}
        code = {"text": _title(record, _at(analysis, "code"))}
        measured = (_at(body, "analysis", "outcome")
                    or _at(body, "svarsgrupp", "utfordAnalys", "analysresultat", "resultatMatvarde") or {})
    kind = ("vital-signs", "Vital Signs") if record.category == "growth" else ("laboratory", "Laboratory")
    found = {**_common("Observation", record), "status": "final",
             "category": [concept(OBSERVATION_CATEGORY, *kind)], "code": code, "subject": refs.patient(),
             "effectiveDateTime": fhir_time(record.author_time), **_value(measured, record)}
    if vital and "code" in found.get("valueQuantity", {}):
        found["meta"] = {**found["meta"], "profile": [VITAL_SIGNS_PROFILE]}
    if record.care_unit:
        found["performer"] = _units(record, refs)
    return found


def _value(outcome: Any, record: Record) -> Resource:
    """value[x] of a measured outcome ({value, unit}): a Quantity when numeric (UCUM coded when
    the unit is plain UCUM), else a string; absent with a reason when there is none."""
    value, unit = _text(_at(outcome, "value")), _text(_at(outcome, "unit"))
    if not value:
        described = _text(_body(record).get("description"))
        if described:
            return {"valueString": described}
        return {"dataAbsentReason": concept(
            "http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown", "Unknown")}
    try:
        number: float | int = int(value) if value.lstrip("-").isdigit() else float(value)
    except ValueError:
        return {"valueString": f"{value} {unit}".strip()}
    quantity: Resource = {"value": number}
    if unit:
        quantity["unit"] = unit
        code = _UCUM_CODES.get(unit, unit)
        if code.isascii() and " " not in code:
            quantity |= {"system": UCUM, "code": code}
    return {"valueQuantity": quantity}


def _request(record: Record, refs: References) -> Resource:
    body = _body(record)
    found = {**_common("ServiceRequest", record), "status": "unknown", "intent": "order",
             "category": [{"coding": [category_coding(record.category)]}],
             "code": {"text": _title(record, body.get("referralOutcomeTitle"),
                                     _at(body, "request", "receivingOrganization", "name"))},
             "subject": refs.patient(), "authoredOn": fhir_time(record.author_time)}
    if record.care_unit:
        found["requester"] = refs.organization(record.care_unit)
    return found


def _alert_body(record: Record) -> dict[str, Any]:
    """GetAlertInformation's body: its elements, or (as some producers send it) wrapped once."""
    body = _body(record)
    wrapped = body.get("alertInformationBody")
    return wrapped if isinstance(wrapped, dict) else body


def _alert_text(record: Record) -> str:
    return _title(record, _alert_body(record).get("typeOfAlertInformation"))


def _allergy(record: Record, refs: References) -> Resource:
    # ait-1: a clinical status unless entered in error; an alert in the record is a current one.
    return {**_common("AllergyIntolerance", record),
            "clinicalStatus": concept(ALLERGY_CLINICAL, "active", "Active"),
            "code": {"text": _alert_text(record)}, "patient": refs.patient(),
            "recordedDate": fhir_time(record.author_time)}


def _flag(record: Record, refs: References) -> Resource:
    found = {**_common("Flag", record), "status": "active", "code": {"text": _alert_text(record)},
             "subject": refs.patient(), "period": {"start": fhir_time(record.author_time)}}
    if record.care_unit:
        found["author"] = refs.organization(record.care_unit)
    return found


def _encounter(record: Record, refs: References) -> Resource:
    contact = _at(_body(record), "careContactCode")
    kind = _CONTACT_CLASS.get(_code(contact))
    found = {**_common("Encounter", record), "status": "unknown",
             "class": (coding(_ENCOUNTER_CLASS, *kind) if kind else coding(NULL_FLAVOR, "UNK", "unknown")),
             "type": [{"text": _title(record, contact if isinstance(contact, dict) else None)}],
             "subject": refs.patient(),
             "period": {"start": fhir_time(record.author_time)}}
    if record.care_unit:
        found["serviceProvider"] = refs.organization(record.care_unit)
    return found


def _immunization(record: Record, refs: References) -> Resource:
    body = _body(record)
    vaccination = body.get("administrationRecord") or body.get("vaccinationMedicalRecordBody") or {}
    name, atc = _title(record, vaccination.get("vaccineName")), _code(vaccination.get("vaccineCode"))
    found = {**_common("Immunization", record), "status": "completed",
             "vaccineCode": concept(ATC, atc, name, name) if atc else {"text": name},
             "patient": refs.patient(), "occurrenceDateTime": fhir_time(record.author_time)}
    if record.care_unit:
        found["performer"] = [{"actor": refs.organization(record.care_unit)}]
    return found


def _care_plan(record: Record, refs: References) -> Resource:
    found = {**_common("CarePlan", record), "status": "unknown", "intent": "plan",
             "title": _title(record), "subject": refs.patient(),
             "created": fhir_time(record.author_time)}
    if record.care_unit:
        found["author"] = refs.organization(record.care_unit)
    return found


def _document(record: Record, refs: References) -> Resource:
    """A note as text; any other category's body as the producer sent it (JSON)."""
    body = _body(record)
    note = body.get("clinicalDocumentNote", body)
    title = _title(record, _at(note, "clinicalDocumentNoteTitle"))
    if record.category == "notes" and isinstance(note, dict):
        content = ("text/plain; charset=utf-8", _text(note.get("clinicalDocumentNoteText")) or title)
    else:
        content = ("application/json", json.dumps(body, ensure_ascii=False, separators=(",", ":")))
    attachment = {"contentType": content[0], "title": title,
                  "data": base64.b64encode(content[1].encode()).decode()}
    found = {**_common("DocumentReference", record), "status": "current", "type": {"text": title},
             "category": [{"coding": [category_coding(record.category)]}],
             "subject": refs.patient(), "date": fhir_time(record.author_time),
             "content": [{"attachment": attachment}]}
    if record.care_unit:
        found["author"] = _units(record, refs)
    return found


_BUILDERS: dict[str, Callable[[Record, References], Resource]] = {
    "diagnoses": _condition, "medications": _medication, "imaging": _report, "ecg": _report,
    "laboratory": _observation, "microbiology": _observation, "growth": _observation,
    "consultations": _request, "referral_flow": _request, "care_contacts": _encounter,
    "vaccinations": _immunization, "care_plans": _care_plan,
}
