"""Parts of the audit's FHIR AuditEvents shared by every event kind: BALP's agents and entities,
the purpose of use, and the OperationOutcome of a refusal (plain JSON dicts)."""

from __future__ import annotations

from npo_platform.contracts.events_pb2 import Actor
from npo_platform.fhir import (
    OutcomeIssue,
    Resource,
    coding,
    concept,
    hsa_identifier,
    operation_outcome,
    patient_reference,
)

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
NETWORK_MACHINE_NAME = "1"
NPO_ROLE = "urn:npo:role"
NPO_SERVICE = "urn:npo:service"
OUTCOME_REF = "outcome"
# DICOM's role of a system in the transfer: the data flows from Source to Destination.
SOURCE_ROLE = ("110153", "Source Role ID")
DESTINATION_ROLE = ("110152", "Destination Role ID")


def purpose_of_use(emergency: bool, reason: str = "") -> Resource:
    if emergency:
        return concept(ACT_REASON, "ETREAT", "Emergency Treatment", reason.strip() or None)
    return concept(ACT_REASON, "TREAT", "treatment")


def user_agent(actor: Actor, kind: Resource, purpose: Resource | None, patient_id: str = "") -> Resource:
    """The person who acted (BALP's user agent: requestor, role, name, purpose; no network).

    Staff are named by HSA-id; the patient acting in person (a block, a lift) by their own id."""
    agent: Resource = {"type": {"coding": [kind]}}
    roles = [coding(NPO_ROLE, role) for role in actor.roles]
    if roles or actor.title:
        role: Resource = {"coding": roles} if roles else {}
        agent["role"] = [{**role, "text": actor.title} if actor.title else role]
    who = (patient_reference(patient_id) if patient_id and "patient" in actor.roles
           else {"identifier": hsa_identifier(actor.user_hsa_id or "unknown")})
    agent["who"] = {**who, **({"display": actor.name} if actor.name else {})}
    if actor.name:
        agent["name"] = actor.name
    agent["requestor"] = True
    if purpose is not None:
        agent["purposeOfUse"] = [purpose]
    return agent


def system_agent(role: tuple[str, str], name: str, *, hsa: bool) -> Resource:
    """A client or server system (DCM role), named by the identity it has on the connection."""
    code, display = role
    name = name or "unknown"
    identifier = hsa_identifier(name) if hsa else {"system": NPO_SERVICE, "value": name}
    return {"type": concept(DCM, code, display), "who": {"identifier": identifier, "display": name},
            "requestor": False, "network": {"address": name, "type": NETWORK_MACHINE_NAME}}


def organisation_agents(actor: Actor) -> list[Resource]:
    """The care giver (vårdgivare) and care unit (vårdenhet) the user acted for (PDL)."""
    found = []
    for code, display, hsa_id in (("PROV", "healthcare provider", actor.care_giver_hsa_id),
                                  ("SDLOC", "service delivery location", actor.care_unit_hsa_id)):
        if hsa_id:
            who = {"type": "Organization", "identifier": hsa_identifier(hsa_id)}
            found.append({"type": concept(ROLE_CLASS, code, display), "who": who, "requestor": False})
    return found


def source(name: str) -> Resource:
    return {"site": "NPÖ", "observer": {"display": name or "unknown"},
            "type": [coding(SOURCE_TYPE, "4", "Application Server")]}


def patient_entity(patient_id: str) -> Resource:
    return {"what": patient_reference(patient_id), "type": coding(ENTITY_TYPE, "1", "Person"),
            "role": coding(OBJECT_ROLE, "1", "Patient")}


def data_entity(system: str, value: str, display: str, details: list[tuple[str, str]]) -> Resource:
    """BALP's data entity: the object acted on (audit-entity-type 2, role Domain Resource)."""
    found: Resource = {"what": {"identifier": {"system": system, "value": value}, "display": display},
                       "type": coding(ENTITY_TYPE, "2", "System Object"),
                       "role": coding(OBJECT_ROLE, "4", "Domain Resource")}
    if details:
        found["detail"] = [{"type": kind, "valueString": text} for kind, text in details]
    return found


def request_entity(request_id: str) -> list[Resource]:
    """BALP's transaction entity: the id of the request (its W3C trace id), when known."""
    if not request_id:
        return []
    return [{"what": {"identifier": {"value": request_id}},
             "type": coding(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id")}]


def refused(resource: Resource, issues: list[OutcomeIssue]) -> None:
    """Add what the caller was answered: a contained OperationOutcome, referenced by an entity."""
    resource["outcomeDesc"] = "; ".join(i.text for i in issues)
    resource["contained"] = [operation_outcome(issues, OUTCOME_REF)]
    resource["entity"].append({
        "what": {"reference": f"#{OUTCOME_REF}"}, "type": coding(ENTITY_TYPE, "4", "Other"),
        "role": coding(OBJECT_ROLE, "3", "Report"), "description": "what the caller was answered",
    })
