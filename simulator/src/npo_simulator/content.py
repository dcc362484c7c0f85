"""Record content as JSON with field names close to the RIVTA clinicalprocess contracts.

Every record has a header in the style of RIVTA's ``...Header`` types (documentId,
sourceSystemHSAId, patientId, accountableHealthcareProfessional, approvedForPatient) and a body
with a few realistic fields of its category. The project-defined categories (growth, forms,
microbiology) follow the same pattern. Where the category has a national read contract
(``npo_rivta.read_contracts``: every category but those three), the body is that contract's body
as JSON in its element order, so the same record answers both protocols alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from npo_platform.categories import by_number
from npo_platform.identifiers import PatientId
from npo_rivta.record_headers import HSA_OID
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
_SPECIALITIES = ("Kardiologi", "Ortopedi", "Neurologi", "Hudmottagningen")
_PLAN_TEXT = "U2Ftb3JkbmFkIHbDpXJkcGxhbg=="  # base64 of "Samordnad vårdplan"
ICD_10_SE = "1.2.752.116.1.1.1.1.3"
KV_INFORMATIONSTYP = "1.2.752.129.2.2.2.1"
KV_VARDKONTAKTTYP = "1.2.752.129.2.2.2.25"
KV_STATUS_VARDBEGARAN = "1.2.752.129.2.2.2.43"
ATC = "1.2.752.129.2.2.3.1.1"
ICF = "1.2.752.116.1.1.3"


def _time(record: Record) -> str:
    return record.time.strftime("%Y%m%d%H%M%S")


def _pick(options: tuple[Any, ...], record: Record) -> Any:
    return options[record.variant % len(options)]


def _cv(code: str, system: str, name: str) -> Json:
    """A coded value (CVType) in the contracts' element order."""
    return {"code": code, "codeSystem": system, "displayName": name}


def _diagnosis(r: Record) -> Json:
    """GetDiagnosis 2's body."""
    code, name = _pick(_DIAGNOSES, r)
    return {"typeOfDiagnosis": "Huvuddiagnos" if r.variant % 3 == 0 else "Bidiagnos",
            "diagnosisTime": _time(r), "diagnosisCode": _cv(code, ICD_10_SE, name)}


def _medication(r: Record) -> Json:
    """GetMedicationHistory 2's body: one prescription (its inner structure is carried whole)."""
    drug, dosage = _pick(_DRUGS, r)
    return {"medicationPrescription": {
        "prescriptionId": {"root": HSA_OID, "extension": r.record_id},
        "typeOfPrescription": "I", "prescriptionStatus": "Active", "startOfTreatment": _time(r),
        "selfMedication": "false",
        "drug": {"unstructuredDrugInformation": {"unstructuredInformation": drug}},
        "dosage": {"dosageInstruction": dosage}}}


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
    """GetImagingOutcome 1's body."""
    return {"examinationSpeciality": {"originalText": _pick(_EXAMS, r)}, "typeOfResult": "DEF",
            "resultTime": _time(r), "resultReport": "Utan anmärkning."}


def _referral(r: Record) -> Json:
    """GetReferralOutcome 3's body."""
    return {"referralOutcomeTypeCode": "SR", "referralOutcomeTitle": _pick(_SPECIALITIES, r),
            "referralOutcomeText": "Bedömning utförd, åter till remittenten.",
            "referral": {"referralId": f"R-{r.record_id}", "referralReason": "Bedömning",
                         "referralAuthor": {"authorTime": _time(r)}}}


def _alert(r: Record) -> Json:
    """GetAlertInformation 2's body."""
    return {"typeOfAlertInformation": _cv("upp", KV_INFORMATIONSTYP, _pick(_ALERTS, r)),
            "validityTimePeriod": {"start": _time(r)}}


def _care_contact(r: Record) -> Json:
    """GetCareContacts 3's body."""
    return {"careContactCode": _cv("1", KV_VARDKONTAKTTYP, "Besök"),
            "careContactReason": "Kontroll",
            "careContactOrgUnit": {"orgUnitHSAId": r.care_unit, "orgUnitName": r.producer.name},
            "careContactTimePeriod": {"start": _time(r), "end": _time(r)}}


def _vaccination(r: Record) -> Json:
    """GetVaccinationHistory 2's body: the occasion and one administration."""
    name, atc = _pick(_VACCINES, r)
    return {"registrationRecord": {"careGiverOrg": {"orgUnitHSAId": r.producer.care_giver}},
            "administrationRecord": {"vaccineName": name, "vaccineCode": _cv(atc, ATC, name)}}


def _note(r: Record) -> Json:
    """GetCareDocumentation 2's body."""
    return {"clinicalDocumentNote": {"clinicalDocumentNoteTitle": _pick(_NOTES, r),
                                     "clinicalDocumentNoteText": "…"}}


def _functional_status(r: Record) -> Json:
    """GetFunctionalStatus 2's body; its category is the engagement's categorization."""
    category = by_number(10).categorizations[r.variant % 2]
    if category == "pad-pad":
        return {"assessmentCategory": category, "padl": {
            "typeOfAssessment": {"originalText": "förflyttning"}, "assessment": "Klarar själv."}}
    return {"assessmentCategory": category, "disability": {
        "disabilityAssessment": _cv("b310", ICF, "Röst- och talfunktioner")}}


def _care_plan(r: Record) -> Json:
    """GetCarePlans 2's body."""
    return {"content": {"mediaType": "text/plain", "value": _PLAN_TEXT}, "typeOfCarePlanEnum": "VP"}


def _maternity(r: Record) -> Json:
    """GetMaternityMedicalHistory 2's body (a registration record, carried whole)."""
    return {"registrationRecord": {"lastMenstrualPeriod": _time(r)[:8]}}


def _referral_flow(r: Record) -> Json:
    """GetRequestActivities 2's body: one status of one referral."""
    return {"statusCode": _cv("2", KV_STATUS_VARDBEGARAN, "Mottagen"), "eventTime": _time(r),
            "request": {"id": f"R-{r.record_id}", "receivingOrganization": {
                "name": _pick(_SPECIALITIES, r)}}}


def _ecg(r: Record) -> Json:
    """GetECGOutcome 1's body (carried whole)."""
    return {"resultTime": _time(r), "resultReport": "Sinusrytm, normalt EKG."}


def _growth(r: Record) -> Json:
    """One measurement of a child's growth (the project's own category 12), of about the size a
    child of that age has."""
    years = max(0.0, (r.time.date() - PatientId(r.patient_id).birth_date).days / 365.25)
    kind = ("weight", "length", "headCircumference")[r.variant % 3]
    spread = 0.9 + (r.variant % 21) / 100
    if kind == "weight":
        value, unit = (3.5 + 2.6 * min(years, 12)) * spread, "kg"
    elif kind == "length":
        value, unit = (50 + 6.5 * min(years, 16)) * spread, "cm"
    else:
        value, unit = (35 + 12 * min(years, 2) / 2 + 0.5 * min(max(years - 2, 0), 10)) * spread, "cm"
    return {"growthMeasurement": {"kind": kind, "value": f"{value:.1f}", "unit": unit}}


def _generic(r: Record) -> Json:
    return {"description": by_number(r.category).name_sv}


_BODIES: dict[int, Callable[[Record], Json]] = {
    1: _diagnosis, 2: _medication, 3: _imaging, 4: _lab, 5: _referral, 6: _alert,
    7: _care_contact, 8: _note, 9: _vaccination, 10: _functional_status, 11: _care_plan,
    12: _growth, 13: _maternity, 14: _referral_flow, 16: _ecg, 17: _microbiology,
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
        header["socialServices"] = True  # the record contract's marker (docs/reference/query.md)
        return {"header": header, "body": _social_note(record)}
    body = _BODIES.get(record.category, _generic)(record)
    if record.protected_identity:
        body |= _contact_details(record)
    return {"header": header, "body": body}
