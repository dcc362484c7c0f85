"""FHIR R4 AuditEvents of consent records: relations, consents, blocks, lifts, emergency
accesses and protected identities registered, revoked, expired or refused.

A registration is a RESTful create at the consent service (BALP PatientCreate), a revocation an
update (BALP PatientUpdate): the user is the author (AUT), the clinician's system the client
(DCM 110153, the data flows from it) and the consent service the server (DCM 110152). An expiry
is the service's own update (no user, its own task the client, no profile claimed); a refused
command has the shape of what was attempted, outcome 8 and a contained OperationOutcome with the
refusal's code.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from npo_platform.contracts.events_pb2 import ConsentEvent
from npo_platform.fhir import OutcomeIssue, Resource, coding

from .domain import Record
from .fhir_parts import (
    AUDIT_TYPE,
    BALP,
    DESTINATION_ROLE,
    PARTICIPATION,
    RESTFUL,
    SOURCE_ROLE,
    data_entity,
    organisation_agents,
    patient_entity,
    purpose_of_use,
    refused,
    request_entity,
    source,
    system_agent,
    user_agent,
)

NPO_CONSENT_RECORD = "urn:npo:consent-record"
REFUSED = ConsentEvent.REFUSED
# AuditEvent.outcome of a consent record: a refused command failed, anything else was done.
REFUSED_OUTCOME, DONE_OUTCOME = "8", "0"
_SUBJECTS = {
    ConsentEvent.PATIENT_RELATION: "patient relation", ConsentEvent.CONSENT: "consent",
    ConsentEvent.BLOCK: "block", ConsentEvent.BLOCK_LIFT: "block lift",
    ConsentEvent.EMERGENCY_ACCESS: "emergency access", ConsentEvent.PROTECTED_IDENTITY: "protected identity",
}
# change → (RESTful interaction, action, BALP profile when it succeeded)
_INTERACTIONS: dict[int, tuple[str, str, str]] = {
    ConsentEvent.REGISTERED: ("create", "C", "PatientCreate"),
    ConsentEvent.REVOKED: ("update", "U", "PatientUpdate"),
    ConsentEvent.EXPIRED: ("update", "U", ""),
}


def consent_audit_event(record: Record) -> Resource:
    entry = record.entry
    event = ConsentEvent.FromString(entry.payload)
    refusal = int(event.change) == REFUSED
    attempted = int(event.attempted) or ConsentEvent.REGISTERED
    change = attempted if refusal else int(event.change)
    interaction, action, profile = _INTERACTIONS.get(change, ("update", "U", ""))
    emergency = event.subject == ConsentEvent.EMERGENCY_ACCESS
    purpose = purpose_of_use(True, event.reason) if emergency else (
        purpose_of_use(False) if event.actor.purpose == "care" else None)
    resource: Resource = {"resourceType": "AuditEvent", "id": entry.event_id}
    if profile and not refusal:
        resource["meta"] = {"profile": [BALP + profile]}
    resource.update({
        "type": coding(AUDIT_TYPE, "rest", "Restful Operation"),
        "subtype": [coding(RESTFUL, interaction, interaction)],
        "action": action,
        "recorded": entry.event_time.isoformat(),
        "outcome": REFUSED_OUTCOME if refusal else DONE_OUTCOME,
        **({"purposeOfEvent": [purpose]} if purpose else {}),
        "agent": _agents(event, purpose),
        "source": source(event.meta.source),
        "entity": [patient_entity(entry.patient_id), _record_entity(event),
                   *request_entity(event.meta.correlation_id)],
    })
    if refusal:
        code = event.refusal_code or "refused"
        detail = event.refusal_detail
        refused(resource, [OutcomeIssue("error", "forbidden",
                                        f"{_subject(event)} refused: {detail or code}", code)])
    return resource


def _agents(event: ConsentEvent, purpose: Resource | None) -> list[Resource]:
    # A command: the data flows from the caller's system (source) to the consent service.
    server = system_agent(DESTINATION_ROLE, event.meta.source, hsa=False)
    if event.change == ConsentEvent.EXPIRED:  # the service's own doing: no user, its task the client
        return [{**system_agent(SOURCE_ROLE, event.meta.source, hsa=False), "requestor": True}, server]
    author = user_agent(event.actor, coding(PARTICIPATION, "AUT", "author"), purpose, event.patient_id)
    client = system_agent(SOURCE_ROLE, event.actor.system_hsa_id, hsa=True)
    return [author, client, server, *organisation_agents(event.actor)]


def _subject(event: ConsentEvent) -> str:
    return _SUBJECTS.get(event.subject, "consent record")


def _record_entity(event: ConsentEvent) -> Resource:
    """The relation, consent, block… acted on, with its scope and validity."""
    details = [("subject", _subject(event)), ("change", ConsentEvent.Change.Name(event.change).lower())]
    details += [(name, value) for name, value in (
        ("care giver", event.care_giver_hsa_id), ("care unit", event.care_unit_hsa_id),
        ("user", event.user_hsa_id), ("reason", event.reason)) if value]
    for name, field in (("valid from", "valid_from"), ("valid to", "valid_to")):
        if event.HasField(field):
            stamp: Timestamp = getattr(event, field)
            details.append((name, stamp.ToJsonString()))
    return data_entity(NPO_CONSENT_RECORD, event.record_id or event.meta.event_id, _subject(event), details)
