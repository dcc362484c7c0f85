"""Event builders of the audit tests (fixtures are in conftest.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from npo_audit.domain import Entry, consent_entry
from npo_platform.contracts import AccessEvent, ConsentEvent
from npo_platform.contracts.events_pb2 import AccessBasis, AccessOutcome, ActivityType
from npo_platform.events import new_meta
from npo_platform.identifiers import make_personnummer
from npo_platform.identity import PRIVATE_KEY_FILE, Principal, Role, issue_token

# A Tuesday, 10:00 Swedish time (office hours) — the "normal" access time of the tests.
OFFICE_TIME = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
UNIT = "SE2321000016-1001"
GIVER = "SE2321000016-0001"
READER = "SE2321000016-9001"


def patient(serial: int) -> str:
    return make_personnummer(date(1980, 1, 1) + timedelta(days=serial % 9000), 1 + serial % 997)


def access_event(
    patient_id: str, *, at: datetime = OFFICE_TIME, user: str = READER, unit: str = UNIT,
    basis: int = AccessBasis.CONSENT, outcome: int = AccessOutcome.ALLOWED,
    protected: bool = False, name: str = "Anna Andersson",
) -> AccessEvent:
    event = AccessEvent(
        meta=new_meta("npo-query", at=at), patient_id=patient_id, activity=ActivityType.READ,
        categories=["dia", "caa-gmh"], basis=basis, outcome=outcome, protected_identity=protected,
    )
    event.actor.user_hsa_id, event.actor.name, event.actor.purpose = user, name, "care"
    event.actor.roles.append("clinician")
    event.actor.care_unit_hsa_id, event.actor.care_giver_hsa_id = unit, GIVER
    if basis == AccessBasis.EMERGENCY:
        event.emergency_reason = "unconscious patient"
    return event


def refused_event(patient_id: str, *, at: datetime = OFFICE_TIME, user: str = READER,
                  code: str = "emergency.reason_required") -> ConsentEvent:
    """A command the consent service refused: an emergency access without a reason, say."""
    event = ConsentEvent(meta=new_meta("npo-consent", at=at), subject=ConsentEvent.EMERGENCY_ACCESS,
                         change=ConsentEvent.REFUSED, attempted=ConsentEvent.REGISTERED,
                         patient_id=patient_id, refusal_code=code)
    event.actor.user_hsa_id, event.actor.care_unit_hsa_id = user, UNIT
    return event


def relation_event(patient_id: str, *, unit: str = UNIT, record_id: str | None = None,
                   revoked: bool = False, at: datetime = OFFICE_TIME - timedelta(days=1)) -> ConsentEvent:
    change = ConsentEvent.REVOKED if revoked else ConsentEvent.REGISTERED
    event = ConsentEvent(
        meta=new_meta("npo-consent", at=at), subject=ConsentEvent.PATIENT_RELATION, change=change,
        patient_id=patient_id, record_id=record_id or str(uuid.uuid4()),
        care_unit_hsa_id=unit, care_giver_hsa_id=GIVER,
    )
    event.valid_from.FromDatetime(at)
    event.actor.user_hsa_id, event.actor.name, event.actor.purpose = READER, "Anna Andersson", "care"
    event.actor.roles.append("clinician")
    event.actor.care_unit_hsa_id, event.actor.care_giver_hsa_id = unit, GIVER
    return event



def relation_history(patient_id: str) -> list[Entry]:
    """A relation registered and revoked, and a registration refused (issue 20's REFUSED)."""
    refused = relation_event(patient_id)
    refused.change, refused.refusal_code = ConsentEvent.REFUSED, "relation.not_own_unit"
    return [consent_entry(relation_event(patient_id)),
            consent_entry(relation_event(patient_id, revoked=True)), consent_entry(refused)]


OFFICER = "SE2321000016-7001"


def token(keys_dir: Path, role: str, *, patient_id: str | None = None, sub: str = OFFICER) -> str:
    """A bearer token of the local issuer for a compliance officer, patient or clinician."""
    fields: dict[str, object] = {"sub": sub, "name": "Tess Tester", "roles": {role}}
    if role == Role.PATIENT:
        fields.update(sub=f"patient-{uuid.uuid4().hex[:6]}", patient=patient_id)
    if role == Role.CLINICIAN:
        fields.update(care_unit=UNIT, care_giver=GIVER, assignment="a1", purpose="care")
    if role == Role.COMPLIANCE_OFFICER:
        fields.update(care_unit=UNIT, care_giver=GIVER)
    principal = Principal.model_validate(fields)
    private_pem = (keys_dir / PRIVATE_KEY_FILE).read_bytes()
    return issue_token(private_pem, principal, timedelta(minutes=10))
