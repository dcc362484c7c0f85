"""The national read contracts this project speaks, one per information category that has one
(design.md §7): their record and body elements, header family and request shape.

Facts read in Inera's published contracts (element names, order, cardinalities); the XSDs in
``schemas/`` say the same. Where a body's elements were not published where this project could
read them (GetECGOutcome 1), the body is typed and carried whole.
"""

from __future__ import annotations

from collections.abc import Mapping

from npo_rivta import contracts as c
from npo_rivta.record_headers import (
    CARE_DOCUMENTATION_HEADER,
    OUTCOME_HEADER,
    REQUEST_STATUS_HEADER,
    SUMMARY,
    SUMMARY_CONTACT_LAST,
)
from npo_rivta.records import ReadContract, RequestShape

DESCRIPTION_2 = "urn:riv:clinicalprocess:healthcond:description:2"
ACTOUTCOME_2 = "urn:riv:clinicalprocess:healthcond:actoutcome:2"
ACTOUTCOME_3 = "urn:riv:clinicalprocess:healthcond:actoutcome:3"
ACTOUTCOME_4 = "urn:riv:clinicalprocess:healthcond:actoutcome:4"
PRESCRIPTION_2 = "urn:riv:clinicalprocess:activityprescription:actoutcome:2"
LOGISTICS_3 = "urn:riv:clinicalprocess:logistics:logistics:3"
REQUEST_STATUS_2 = "urn:riv:crm:requeststatus:2"


def _summary(interaction: c.Interaction, category: str, core: str, record: str,
             body: tuple[str, ...], *, contact_last: bool = False,
             result: bool = True) -> ReadContract:
    """A contract whose records are ``<record>Header`` (a patient summary header) and
    ``<record>Body``."""
    return ReadContract(interaction, category, core, record, f"{record}Header", f"{record}Body",
                        SUMMARY_CONTACT_LAST if contact_last else SUMMARY, body, result=result)


CARE_DOCUMENTATION = ReadContract(
    c.GET_CARE_DOCUMENTATION, "notes", DESCRIPTION_2, "careDocumentation",
    "careDocumentationHeader", "careDocumentationBody", CARE_DOCUMENTATION_HEADER,
    ("clinicalDocumentNote",), RequestShape("careUnitHSAid", source="sourceSystemHSAid"))
LABORATORY_ORDER_OUTCOME = ReadContract(
    c.GET_LABORATORY_ORDER_OUTCOME, "laboratory", ACTOUTCOME_4, "laboratoryOrderOutcome",
    "laboratoryOrderOutcomeHeader", "laboratoryOrderOutcomeBody", OUTCOME_HEADER,
    ("resultattyp", "resultatrapport", "resultatkommentar", "laboratorieid", "svarsrapportid",
     "svarstidpunkt", "patientinformation", "presentation", "remiss", "ansvarigtLabb",
     "svarsmottagare", "kopiemottagare", "vidimering", "svarsgrupp"),
    RequestShape(giver="careGiverHSAId"), result=False)
DIAGNOSIS = _summary(c.GET_DIAGNOSIS, "diagnoses", DESCRIPTION_2, "diagnosis", (
    "typeOfDiagnosis", "chronicDiagnosis", "diagnosisTime", "diagnosisCode", "relatedDiagnosis"))
ALERT_INFORMATION = _summary(c.GET_ALERT_INFORMATION, "alerts", DESCRIPTION_2, "alertInformation", (
    "typeOfAlertInformation", "ascertainedDate", "verifiedTime", "validityTimePeriod",
    "alertInformationComment", "obsoleteTime", "obsoleteComment", "hypersensitivity",
    "seriousDisease", "treatment", "communicableDisease", "restrictionOfCare",
    "unstructuredAlertInformation", "relatedAlertInformation"))
FUNCTIONAL_STATUS = _summary(
    c.GET_FUNCTIONAL_STATUS, "functional_status", DESCRIPTION_2, "functionalStatusAssessment",
    ("assessmentCategory", "comment", "padl", "disability"))
IMAGING_OUTCOME = _summary(c.GET_IMAGING_OUTCOME, "imaging", ACTOUTCOME_3, "imagingOutcome", (
    "examinationSpeciality", "typeOfResult", "resultTime", "resultReport", "resultComment",
    "radiationDose", "patientData", "imageRecording", "referral"))
REFERRAL_OUTCOME = _summary(c.GET_REFERRAL_OUTCOME, "consultations", ACTOUTCOME_3, "referralOutcome", (
    "referralOutcomeTypeCode", "referralOutcomeTitle", "referralOutcomeText", "clinicalInformation",
    "act", "referral"))
ECG_OUTCOME = _summary(c.GET_ECG_OUTCOME, "ecg", ACTOUTCOME_3, "ecgOutcome", ())
MATERNITY_MEDICAL_HISTORY = _summary(
    c.GET_MATERNITY_MEDICAL_HISTORY, "maternity", ACTOUTCOME_2, "maternityMedicalRecord",
    ("registrationRecord", "pregnancyCheckupRecord", "postDeliveryRecord"), contact_last=True,
    result=False)
MEDICATION_HISTORY = _summary(
    c.GET_MEDICATION_HISTORY, "medications", PRESCRIPTION_2, "medicationMedicalRecord",
    ("medicationPrescription", "additionalPatientInformation"))
VACCINATION_HISTORY = _summary(
    c.GET_VACCINATION_HISTORY, "vaccinations", PRESCRIPTION_2, "vaccinationMedicalRecord",
    ("registrationRecord", "administrationRecord", "additionalPatientInformation"))
CARE_CONTACTS = _summary(c.GET_CARE_CONTACTS, "care_contacts", LOGISTICS_3, "careContact", (
    "careContactCode", "careContactReason", "careContactOrgUnit", "careContactTimePeriod",
    "careContactStatus", "additionalPatientInformation"), contact_last=True)
CARE_PLANS = _summary(c.GET_CARE_PLANS, "care_plans", LOGISTICS_3, "carePlan", (
    "content", "participatingCareUnitHSAId", "typeOfCarePlanEnum"), contact_last=True)
REQUEST_ACTIVITIES = ReadContract(
    c.GET_REQUEST_ACTIVITIES, "referral_flow", REQUEST_STATUS_2, "requestActivity", "header",
    "body", REQUEST_STATUS_HEADER, ("statusCode", "eventTime", "request"),
    RequestShape(giver="careGiverHSAId", ii=True), result=False)

READ_CONTRACTS: Mapping[str, ReadContract] = {contract.category: contract for contract in (
    DIAGNOSIS, MEDICATION_HISTORY, IMAGING_OUTCOME, LABORATORY_ORDER_OUTCOME, REFERRAL_OUTCOME,
    ALERT_INFORMATION, CARE_CONTACTS, CARE_DOCUMENTATION, VACCINATION_HISTORY, FUNCTIONAL_STATUS,
    CARE_PLANS, MATERNITY_MEDICAL_HISTORY, REQUEST_ACTIVITIES, ECG_OUTCOME)}
"""Every read contract by the category it serves."""
