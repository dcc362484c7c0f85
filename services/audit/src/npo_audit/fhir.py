"""FHIR R4 AuditEvents of access records, in the shape of IHE Basic Audit Log Patterns (BALP).

A successful read (outcome 0) claims BALP's PatientRead profile: type rest, subtype read, action
R; a client agent (DCM 110152, the reader's consumer system), a server agent (DCM 110153, the
service that answered), the user (IRCP, requestor, role, name, purpose of use); the patient by
identifier, the data read (audit-entity-type 2) and the request id (BALP's XrequestId). A
refusal, a partial answer or an undelivered one has the same shape with its own outcome and a
contained OperationOutcome saying what the reader was answered, and claims no profile (the
profile fixes outcome to success). Emergency access is purpose of use ETREAT with the reason.

Network addresses are not in the access event: each system is named by the identity it is known
by on the connection (the consumer system's HSA-id, the service's name), as a machine name.
"""

from __future__ import annotations

from npo_platform.contracts.events_pb2 import (
    AccessBasis,
    AccessEvent,
    AccessOutcome,
    ActivityType,
    ProcessingStatus,
    ProducerResult,
)
from npo_platform.fhir import OutcomeIssue, Resource, coding

from .domain import Kind, Record
from .fhir_consent import consent_audit_event
from .fhir_parts import (
    AUDIT_TYPE,
    BALP,
    BALP_ENTITY_TYPE,
    DESTINATION_ROLE,
    PARTICIPATION,
    RESTFUL,
    ROLE_CLASS,
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

NPO_ANSWER = "urn:npo:access-event"  # the overview answer, named by its accessEventId

# FHIR AuditEvent.outcome: 0 success, 4 minor failure (partial), 8 serious failure (also of an
# outcome this table does not know). The AuditEvent search matches the same codes.
ACCESS_OUTCOMES: dict[int, str] = {
    AccessOutcome.ALLOWED: "0", AccessOutcome.PARTIAL: "4",
    AccessOutcome.DENIED: "8", AccessOutcome.NOT_DELIVERED: "8",
}
OTHER_ACCESS_OUTCOME = "8"
_READS = frozenset({ActivityType.READ, ActivityType.EMERGENCY_OPEN, ActivityType.PRINT})
_ANSWERED = frozenset({ProcessingStatus.DATA_FROM_SOURCE, ProcessingStatus.DATA_FROM_CACHE,
                       ProcessingStatus.REQUESTED})


class NotAuditEvent(ValueError):
    """A record with no AuditEvent form (a compliance review)."""


def audit_event(record: Record) -> Resource:
    """The AuditEvent (JSON) of an access or consent record."""
    if record.entry.kind is Kind.ACCESS:
        return access_audit_event(record)
    if record.entry.kind is Kind.CONSENT:
        return consent_audit_event(record)
    raise NotAuditEvent(f"a {record.entry.kind.value} record has no AuditEvent form")


def access_audit_event(record: Record) -> Resource:
    entry = record.entry
    event = AccessEvent.FromString(entry.payload)
    outcome = ACCESS_OUTCOMES.get(entry.outcome, OTHER_ACCESS_OUTCOME)
    purpose = purpose_of_use(entry.basis == AccessBasis.EMERGENCY, event.emergency_reason)
    read = entry.activity in _READS
    resource: Resource = {"resourceType": "AuditEvent", "id": entry.event_id}
    if outcome == "0" and read:
        resource["meta"] = {"profile": [BALP + "PatientRead"]}
    resource.update({
        "type": coding(AUDIT_TYPE, "rest", "Restful Operation"),
        "subtype": [coding(RESTFUL, "read", "read")] if read else [],
        "action": "R" if read else "E",
        "recorded": entry.event_time.isoformat(),
        "outcome": outcome,
        "purposeOfEvent": [purpose],
        "agent": [
            user_agent(event.actor, coding(PARTICIPATION, "IRCP", "information recipient"), purpose),
            # A read: the data flows from the server (source) to the reader's system.
            system_agent(DESTINATION_ROLE, event.actor.system_hsa_id, hsa=True),
            system_agent(SOURCE_ROLE, event.meta.source, hsa=False),
            *organisation_agents(event.actor),
        ],
        "source": source(event.meta.source),
        "entity": [patient_entity(entry.patient_id), _answer_entity(event),
                   *request_entity(event.trace_id)],
    })
    if not resource["subtype"]:
        del resource["subtype"]
    if outcome != "0":
        refused(resource, _outcome_issues(event, outcome))
    return resource


def _answer_entity(event: AccessEvent) -> Resource:
    categories = [("category", c) for c in event.categories]
    return data_entity(NPO_ANSWER, event.meta.event_id, "NPÖ overview answer", categories)


def _outcome_issues(event: AccessEvent, outcome: str) -> list[OutcomeIssue]:
    if event.outcome == AccessOutcome.NOT_DELIVERED:
        return [OutcomeIssue("error", "exception", "not delivered: the access event was not "
                             "acknowledged in time, the reader got an error and no data",
                             event.reason_code or "audit.unavailable")]
    if outcome == "8":
        reason = event.reason_code or "denied"
        return [OutcomeIssue("error", "forbidden", f"access refused: {reason}", reason)]
    issues = [_producer_issue(p) for p in event.producers if p.status not in _ANSWERED]
    return issues or [OutcomeIssue("warning", "incomplete", "answered in part: "
                                   + (event.reason_code or "some information withheld"),
                                   event.reason_code)]


def _producer_issue(producer: ProducerResult) -> OutcomeIssue:
    status = ProcessingStatus.Name(producer.status)
    withheld = producer.status in (ProcessingStatus.WITHHELD_BY_DECISION,
                                   ProcessingStatus.NOT_AUTHORISED_BY_ROUTING)
    where = producer.logical_address or "a producer"
    cause = f" ({producer.cause_code})" if producer.cause_code else ""
    return OutcomeIssue("warning", "suppressed" if withheld else "incomplete",
                        f"{where}: {status.lower()}{cause}", producer.cause_code)


def extract_audit_event(record: Record) -> Resource:
    """The patient's own view of an access: care giver and unit, never the reader's identity."""
    full = access_audit_event(record)
    organisations = [a for a in full["agent"] if a["type"]["coding"][0]["system"] == ROLE_CLASS]
    if organisations:
        organisations[-1] = {**organisations[-1], "requestor": True}
        if "purposeOfEvent" in full:
            organisations[-1]["purposeOfUse"] = full["purposeOfEvent"]
    full.pop("meta", None)  # no user agent: the BALP profile is not claimed
    full["agent"] = organisations or [{"who": {"display": "unknown"}, "requestor": True}]
    full["entity"] = [e for e in full["entity"] if e["type"]["system"] != BALP_ENTITY_TYPE]
    return full

