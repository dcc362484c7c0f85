"""Record content as JSON with field names close to the RIVTA clinicalprocess contracts.

Every record has a header in the style of RIVTA's ``...Header`` types (documentId,
sourceSystemHSAId, patientId, accountableHealthcareProfessional, approvedForPatient) and a body
with a few realistic fields of its category. The project-defined categories (growth, forms,
microbiology) follow the same pattern. Where the category has a national read contract this
project speaks (notes, laboratory: ``npo_rivta.records``), the body is that contract's body as
JSON, so the same record answers both protocols alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from npo_platform.categories import by_number
from npo_rivta.records import HSA_OID
from npo_simulator.records import Record

Json = dict[str, Any]

_DIAGNOSES = (("I10", "Essentiell hypertoni"), ("E11.9", "Typ 2-diabetes utan komplikationer"),
              ("J44.1", "KOL med akut exacerbation"), ("S72.0", "Fraktur på lårbenshalsen"),
              ("I50.9", "Hjärtsvikt, ospecificerad"), ("F03", "Ospecificerad demens"))
_DRUGS = (("Metformin", "500 mg 1x2"), ("Alvedon", "1 g vid behov, max 4 g/dygn"),
          ("Enalapril", "10 mg 1x1"), ("Furosemid", "40 mg 1x1"), ("Waran", "enligt ordination"))
_ANALYSES = (("P-Glukos", "6.1", "mmol/L"), ("B-Hb", "128", "g/L"), ("P-Krea", "92", "µmol/L"),
             ("P-CRP", "14", "mg/L"), ("P-Kalium", "4.1", "mmol/L"))
_EXAMS = ("Lungröntgen", "DT hjärna", "Höftröntgen", "Ultraljud buk")
_VACCINES = (("DTaP-IPV-Hib-HepB", "J07CA09"), ("MPR", "J07BD52"), ("Influensa", "J07BB02"))
_NOTES = ("Inskrivningsanteckning", "Epikris", "Daganteckning", "Omvårdnadsanteckning",
          "Hemsjukvårdsanteckning")
_ALERTS = ("Överkänslighet mot penicillin", "Behandling med antikoagulantia", "Smitta: MRSA")


def _time(record: Record) -> str:
    return record.time.strftime("%Y%m%d%H%M%S")


def _pick(options: tuple[Any, ...], record: Record) -> Any:
    return options[record.variant % len(options)]


def _diagnosis(r: Record) -> Json:
    code, name = _pick(_DIAGNOSES, r)
    return {"diagnosisCode": {"code": code, "codeSystem": "ICD-10-SE", "displayName": name},
            "typeOfDiagnosis": "Huvuddiagnos" if r.variant % 3 == 0 else "Bidiagnos"}


def _medication(r: Record) -> Json:
    drug, dosage = _pick(_DRUGS, r)
    return {"medicationPrescription": {"drug": {"name": drug}, "dosageInstruction": dosage,
                                       "prescriptionStatus": "Active"}}


def _microbiology(r: Record) -> Json:
    analysis, value, unit = _pick(_ANALYSES, r)
    return {"analysis": {"code": analysis, "outcome": {"value": value, "unit": unit}}}


def _lab(r: Record) -> Json:
    """GetLaboratoryOrderOutcome 4's body, in its order: result type, laboratory, report id and
    time, responsible laboratory, recipient, one result group with one analysis."""
    analysis, value, unit = _pick(_ANALYSES, r)
    unit_id = {"orgUnit": {"id": {"root": HSA_OID, "extension": r.care_unit}}}
    return {
        "resultattyp": {"code": "DEF", "displayName": "Definitivsvar"},
        "laboratorieid": {"root": HSA_OID, "extension": r.care_unit},
        "svarsrapportid": {"root": HSA_OID, "extension": r.record_id},
        "svarstidpunkt": _time(r),
        "ansvarigtLabb": unit_id,
        "svarsmottagare": unit_id,
        "svarsgrupp": {"utfordAnalys": {"analys": {"code": analysis}, "analysresultat": {
            "resultatMatvarde": {"value": value, "unit": unit}}}},
    }


def _imaging(r: Record) -> Json:
    return {"examinationSpeciality": _pick(_EXAMS, r), "resultReport": "Utan anmärkning."}


def _vaccination(r: Record) -> Json:
    name, atc = _pick(_VACCINES, r)
    return {"vaccinationMedicalRecordBody": {"vaccineName": name, "vaccineCode": atc}}


def _note(r: Record) -> Json:
    """GetCareDocumentation 2's body."""
    return {"clinicalDocumentNote": {"clinicalDocumentNoteTitle": _pick(_NOTES, r),
                                     "clinicalDocumentNoteText": "…"}}


def _alert(r: Record) -> Json:
    return {"alertInformationBody": {"typeOfAlertInformation": _pick(_ALERTS, r)}}


def _generic(r: Record) -> Json:
    return {"description": by_number(r.category).name_sv}


_BODIES: dict[int, Callable[[Record], Json]] = {
    1: _diagnosis, 2: _medication, 3: _imaging, 4: _lab, 6: _alert, 8: _note, 9: _vaccination,
    17: _microbiology,
}


_SOCIAL_NOTES = ("Biståndsbeslut: hemtjänst (SoL 4 kap. 1 §)", "Utredning enligt SoL 11 kap. 1 §",
                 "Genomförandeplan, hemtjänst", "Journalanteckning, socialtjänst")


def _social_note(r: Record) -> Json:
    return {"clinicalDocumentNoteTitle": _pick(_SOCIAL_NOTES, r), "clinicalDocumentNoteText": "…",
            "legalBasis": "SoL"}


def _contact_details(r: Record) -> Json:
    """What a record system holds of a patient's whereabouts: never released for a protected
    identity (the overview removes these fields, whatever the producer sends)."""
    return {"address": {"street": f"Storgatan {r.variant % 90 + 1}", "postalCode": "58222",
                        "city": "Linköping"},
            "phone": f"+46 70 {r.variant % 1000:03d} {r.variant % 100:02d} 00",
            "relatives": [{"relation": "make/maka", "name": "Närstående Nilsson",
                           "phone": "+46 73 000 00 00"}],
            "location": {"ward": "Avdelning 12", "room": str(r.variant % 40 + 1)}}


def document(record: Record) -> Json:
    """The record as the producer answers it."""
    org = record.producer
    header = {
        "documentId": record.record_id,
        "sourceSystemHSAId": org.source_system,
        "patientId": {"id": record.patient_id, "type": "1.2.752.129.2.1.3.1"},
        "accountableHealthcareProfessional": {
            "authorTime": _time(record),
            "healthcareProfessionalCareUnitHSAId": record.care_unit,
            "healthcareProfessionalCareGiverHSAId": org.care_giver,
        },
        "approvedForPatient": True,
    }
    if record.social_services:
        header["socialServices"] = True  # the record contract's marker (query README)
        return {"header": header, "body": _social_note(record)}
    body = _BODIES.get(record.category, _generic)(record)
    if record.protected_identity:
        body |= _contact_details(record)
    return {"header": header, "body": body}
