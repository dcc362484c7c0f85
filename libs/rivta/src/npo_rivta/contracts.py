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

GET_CARE_DOCUMENTATION = Interaction(
    "clinicalprocess:healthcond:description", "GetCareDocumentation", 2,
    "GetCareDocumentationResponder_2.0.xsd", "A patient's notes (care documentation).")
GET_LABORATORY_ORDER_OUTCOME = Interaction(
    "clinicalprocess:healthcond:actoutcome", "GetLaboratoryOrderOutcome", 4,
    "GetLaboratoryOrderOutcomeResponder_4.0.xsd", "A patient's laboratory results.")
READ_INTERACTIONS = (GET_CARE_DOCUMENTATION, GET_LABORATORY_ORDER_OUTCOME)
