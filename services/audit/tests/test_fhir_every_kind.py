"""Every kind of audit record as FHIR, checked by HAPI FHIR's validator and BALP's rules: each
access outcome on each basis (with producers answered, withheld and failed), each consent subject
registered, revoked, expired and refused, the patient's own view of each access, and the export
Bundle of all of them. The real stack makes the usual kinds (tests/test_fhir_audit_events.py);
this test makes the ones it cannot make on demand: an expiry, a read not delivered."""

from __future__ import annotations

from datetime import UTC, datetime

from audit_fixtures import UNIT, access_event, patient, refused_event, relation_event

from npo_audit.domain import Entry, Record, access_entry, consent_entry
from npo_audit.fhir import audit_event, extract_audit_event
from npo_deploy.fhir_checks import balp_problems, bundle_problems
from npo_deploy.fhir_validator import FhirValidator
from npo_deploy.testing import report_validated
from npo_platform.contracts import AccessEvent, ConsentEvent
from npo_platform.contracts.events_pb2 import AccessBasis, AccessOutcome, ProcessingStatus
from npo_platform.fhir import bundle as fhir_bundle

PATIENT = patient(7)
BASES = (AccessBasis.OWN_CARE_GIVER, AccessBasis.CONSENT, AccessBasis.EMERGENCY)


def _record(entry: Entry) -> Record:
    return Record("p0", 1, datetime(2026, 3, 10, 9, 0, 1, tzinfo=UTC), entry, b"\0" * 32, b"\1" * 32)


def _access(basis: int, outcome: int) -> AccessEvent:
    event = access_event(PATIENT, basis=AccessBasis.NO_BASIS if outcome == AccessOutcome.DENIED else basis,
                         outcome=outcome)
    answered = event.producers.add(logical_address="SE2321000016-LA01", source_system="SE2321000016-SYS",
                                   data_controller="SE2321000016-0001", care_unit_hsa_id=UNIT,
                                   categories=["dia"], status=ProcessingStatus.DATA_FROM_SOURCE,
                                   record_count=3)
    if outcome == AccessOutcome.PARTIAL:
        event.producers.add(logical_address="SE2321000016-LA02", categories=["dia"],
                            status=ProcessingStatus.NO_DATA_SYNCH_FAILED, cause_code="timeout",
                            causing_agent="SE2321000016-LA02", http_status=504)
        event.producers.add(categories=["caa-gmh"], status=ProcessingStatus.WITHHELD_BY_DECISION,
                            cause_code="blocked")
    if outcome in (AccessOutcome.DENIED, AccessOutcome.NOT_DELIVERED):
        event.producers.remove(answered)
    if outcome == AccessOutcome.NOT_DELIVERED:
        event.meta.correlation_id = event.meta.event_id  # the read it corrects
    return event


def _consent(subject: int, change: int) -> ConsentEvent:
    if change == ConsentEvent.REFUSED:
        event = refused_event(PATIENT)
        event.subject = subject  # type: ignore[assignment]
        event.actor.name, event.actor.purpose = "Anna Andersson", "care"  # as the service writes it
        event.actor.roles.append("clinician")
        return event
    event = relation_event(PATIENT, revoked=change == ConsentEvent.REVOKED)
    event.subject, event.change = subject, change  # type: ignore[assignment]
    if subject == ConsentEvent.EMERGENCY_ACCESS:
        event.reason = "unconscious after a fall"
    if change == ConsentEvent.EXPIRED:  # the consent service's own doing: no user
        event.ClearField("actor")
    return event


def test_every_kind_of_record_is_a_valid_audit_event_in_balp_shape(fhir_validator: FhirValidator) -> None:
    before = fhir_validator.resources
    outcomes = (AccessOutcome.ALLOWED, AccessOutcome.PARTIAL, AccessOutcome.DENIED,
                AccessOutcome.NOT_DELIVERED)
    accesses = [_record(access_entry(_access(b, o))) for b in BASES for o in outcomes]
    changes = (ConsentEvent.REGISTERED, ConsentEvent.REVOKED, ConsentEvent.EXPIRED, ConsentEvent.REFUSED)
    subjects = [s for s in ConsentEvent.Subject.values() if s]
    consents = [_record(consent_entry(_consent(s, c))) for s in subjects for c in changes]
    events = [audit_event(r) for r in (*accesses, *consents)]
    own_views = [extract_audit_event(r) for r in accesses]

    for event in (*events, *own_views):
        assert [str(issue) for issue in fhir_validator.errors(event)] == [], event
    assert {e["id"]: balp_problems(e) for e in events} == {e["id"]: [] for e in events}
    bundle = fhir_bundle("collection", events)  # as the export's
    assert [str(issue) for issue in fhir_validator.errors(bundle)] == []
    assert bundle_problems(bundle) == []
    assert sorted({e["outcome"] for e in events}) == ["0", "4", "8"]
    assert len(events) == len(BASES) * len(outcomes) + len(subjects) * len(changes)
    report_validated("every audit record kind (AuditEvents, own views, export Bundle)",
                     fhir_validator.resources - before)
