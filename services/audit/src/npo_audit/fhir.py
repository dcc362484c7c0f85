"""FHIR R4 AuditEvent for an access record, following IHE Basic Audit Log Patterns (BALP).

BALP's "PatientRead" pattern: type rest, subtype the RESTful interaction, action R, the user as
the requesting agent (HSA-id), the care unit as the organisation the user acts for, the
consumer system as the source, the patient as an entity with role 1 (Patient).
"""

from __future__ import annotations

from typing import Any

from npo_platform.contracts.events_pb2 import AccessBasis, AccessEvent, AccessOutcome

from .domain import Record

HSA_SYSTEM = "urn:oid:1.2.752.129.2.1.4.1"  # HSA-id
PNR_SYSTEM = "http://electronichealth.se/identifier/personnummer"
AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
BALP_PATIENT_READ = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead"
NPO_CATEGORY = "urn:npo:information-category"

_ACTIONS = {1: "R", 2: "U", 3: "U", 4: "R", 5: "E", 6: "D", 7: "R"}
_SUBTYPES = {1: "read", 2: "update", 3: "update", 4: "read", 5: "read", 6: "delete", 7: "read"}
# FHIR AuditEvent.outcome: 0 success, 4 minor failure (partial), 8 serious failure (denied).
_OUTCOMES: dict[int, str] = {
    AccessOutcome.ALLOWED: "0", AccessOutcome.PARTIAL: "4", AccessOutcome.DENIED: "8",
}


def _identifier(system: str, value: str) -> dict[str, Any]:
    return {"identifier": {"system": system, "value": value}}


def audit_event(record: Record) -> dict[str, Any]:
    """The AuditEvent resource (as JSON) for an access record."""
    entry = record.entry
    event = AccessEvent.FromString(entry.payload)
    emergency = entry.basis == AccessBasis.EMERGENCY
    purpose = {"system": ACT_REASON, "code": "ETREAT" if emergency else "TREAT"}
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": entry.event_id,
        "meta": {"profile": [BALP_PATIENT_READ]},
        "type": {"system": AUDIT_TYPE, "code": "rest", "display": "Restful Operation"},
        "subtype": [{"system": RESTFUL, "code": _SUBTYPES.get(entry.activity, "read")}],
        "action": _ACTIONS.get(entry.activity, "R"),
        "recorded": entry.event_time.isoformat(),
        "outcome": _OUTCOMES.get(entry.outcome, "8"),
        "purposeOfEvent": [{"coding": [purpose]}],
        "agent": _agents(entry.user_hsa_id, event, purpose),
        "source": {"observer": _identifier(HSA_SYSTEM, event.actor.system_hsa_id or "npo-query")},
        "entity": _entities(entry.patient_id, list(entry.categories)),
    }
    if event.reason_code or event.emergency_reason:
        resource["outcomeDesc"] = event.emergency_reason or event.reason_code
    return resource


def _agents(user: str, event: AccessEvent, purpose: dict[str, str]) -> list[dict[str, Any]]:
    actor = event.actor
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
        "who": {**_identifier(HSA_SYSTEM, user), "display": actor.name},
        "requestor": True,
        "purposeOfUse": [{"coding": [purpose]}],
    }
    if actor.care_unit_hsa_id:
        agent["location"] = {"display": actor.care_unit_hsa_id}
    organisation = {
        "type": {"coding": [{"system": PARTICIPATION, "code": "PROV", "display": "healthcare provider"}]},
        "who": _identifier(HSA_SYSTEM, actor.care_unit_hsa_id or actor.care_giver_hsa_id),
        "requestor": False,
    }
    return [agent, organisation]


def _entities(patient_id: str, categories: list[str]) -> list[dict[str, Any]]:
    patient: dict[str, Any] = {
        "what": _identifier(PNR_SYSTEM, patient_id),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
        "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
    }
    read = [
        {"type": {"system": NPO_CATEGORY, "code": category},
         "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}}
        for category in categories
    ]
    return [patient, *read]


def bundle(records: list[Record]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": audit_event(r)} for r in records],
    }
