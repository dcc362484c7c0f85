"""The service interactions this project speaks: namespaces, operations, paths, schemas.

One ``Interaction`` per RIV-TA responder (one WSDL, one URL). Its facts follow RIVTABP21: the
responder namespace ``urn:riv:<domain>:<Name>Responder:<major>``, the request element
``<Name>`` and answer ``<Name>Response`` in it, ``soapAction`` = ``<responder namespace>:<Name>``,
the WSDL namespace ``urn:riv:<domain>:<Name>:<major>:rivtabp21``, and the URL
``/riv/<domain as a path>/<Name>Responder/<major>``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Interaction:
    domain: str  # e.g. "itintegration:engagementindex"
    name: str  # the operation, e.g. "Update"
    major: int
    schema: str  # the responder's XSD in npo_rivta/schemas
    doc: str  # one line for the WSDL and the README

    @property
    def responder_ns(self) -> str:
        return f"urn:riv:{self.domain}:{self.name}Responder:{self.major}"

    @property
    def wsdl_ns(self) -> str:
        return f"urn:riv:{self.domain}:{self.name}:{self.major}:rivtabp21"

    @property
    def soap_action(self) -> str:
        return f"{self.responder_ns}:{self.name}"

    @property
    def request(self) -> str:
        """The request element (Clark notation)."""
        return f"{{{self.responder_ns}}}{self.name}"

    @property
    def response(self) -> str:
        return f"{{{self.responder_ns}}}{self.name}Response"

    @property
    def path(self) -> str:
        return f"/riv/{self.domain.replace(':', '/')}/{self.name}Responder/{self.major}"

    def qualified(self, local: str) -> str:
        """A child element of the request or response (they are in the responder namespace)."""
        return f"{{{self.responder_ns}}}{local}"


ENGAGEMENT_INDEX = "itintegration:engagementindex"
UPDATE = Interaction(ENGAGEMENT_INDEX, "Update", 1, "UpdateResponder_1.0.xsd",
                     "A producer's engagement transactions (1-1000) for the index.")
PROCESS_NOTIFICATION = Interaction(
    ENGAGEMENT_INDEX, "ProcessNotification", 1, "ProcessNotificationResponder_1.0.xsd",
    "An engagement index's changes, to another index or an aggregating cache.")
FIND_CONTENT = Interaction(ENGAGEMENT_INDEX, "FindContent", 1, "FindContentResponder_1.0.xsd",
                           "A patient's engagements of one service domain.")
ENGAGEMENT_INDEX_INTERACTIONS = (UPDATE, PROCESS_NOTIFICATION, FIND_CONTENT)

DESCRIPTION = "clinicalprocess:healthcond:description"
ACTOUTCOME = "clinicalprocess:healthcond:actoutcome"
PRESCRIPTION = "clinicalprocess:activityprescription:actoutcome"
LOGISTICS = "clinicalprocess:logistics:logistics"
REQUEST_STATUS = "crm:requeststatus"


def _read(domain: str, name: str, major: int, doc: str) -> Interaction:
    return Interaction(domain, name, major, f"{name}Responder_{major}.0.xsd", doc)


GET_CARE_DOCUMENTATION = _read(DESCRIPTION, "GetCareDocumentation", 2,
                               "A patient's notes (care documentation).")
GET_DIAGNOSIS = _read(DESCRIPTION, "GetDiagnosis", 2, "A patient's diagnoses.")
GET_ALERT_INFORMATION = _read(DESCRIPTION, "GetAlertInformation", 2,
                              "A patient's alerts (uppmärksamhetsinformation).")
GET_FUNCTIONAL_STATUS = _read(DESCRIPTION, "GetFunctionalStatus", 2,
                              "A patient's functional status and ADL assessments.")
GET_LABORATORY_ORDER_OUTCOME = _read(ACTOUTCOME, "GetLaboratoryOrderOutcome", 4,
                                     "A patient's laboratory results.")
GET_IMAGING_OUTCOME = _read(ACTOUTCOME, "GetImagingOutcome", 1, "A patient's imaging outcomes.")
GET_REFERRAL_OUTCOME = _read(ACTOUTCOME, "GetReferralOutcome", 3,
                             "A patient's consultation referral outcomes.")
GET_ECG_OUTCOME = _read(ACTOUTCOME, "GetECGOutcome", 1, "A patient's ECG outcomes.")
GET_MATERNITY_MEDICAL_HISTORY = _read(ACTOUTCOME, "GetMaternityMedicalHistory", 2,
                                      "A patient's maternity care records.")
GET_MEDICATION_HISTORY = _read(PRESCRIPTION, "GetMedicationHistory", 2,
                               "A patient's medication history.")
GET_VACCINATION_HISTORY = _read(PRESCRIPTION, "GetVaccinationHistory", 2,
                                "A patient's vaccinations.")
GET_CARE_CONTACTS = _read(LOGISTICS, "GetCareContacts", 3, "A patient's care contacts.")
GET_CARE_PLANS = _read(LOGISTICS, "GetCarePlans", 2, "A patient's care plans.")
GET_REQUEST_ACTIVITIES = _read(REQUEST_STATUS, "GetRequestActivities", 2,
                               "The status flow of a patient's referrals.")
READ_INTERACTIONS = (
    GET_DIAGNOSIS, GET_MEDICATION_HISTORY, GET_IMAGING_OUTCOME, GET_LABORATORY_ORDER_OUTCOME,
    GET_REFERRAL_OUTCOME, GET_ALERT_INFORMATION, GET_CARE_CONTACTS, GET_CARE_DOCUMENTATION,
    GET_VACCINATION_HISTORY, GET_FUNCTIONAL_STATUS, GET_CARE_PLANS, GET_MATERNITY_MEDICAL_HISTORY,
    GET_REQUEST_ACTIVITIES, GET_ECG_OUTCOME,
)
