"""Event and command handlers: access/consent batches into the chain, reviews into the log."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from npo_platform.contracts import AccessEvent, ConsentEvent
from npo_platform.identifiers import is_ei_patient_id
from npo_platform.identity import Claims
from npo_platform.kafka import PermanentError, Received

from .domain import Entry, Kind, access_entry, consent_entry
from .store import Appended, AuditStore

REVIEW_CHAIN = "review"


def chain_name(kind: Kind, partition: int) -> str:
    """One chain per Kafka partition: its records arrive in order, from one consumer at a time."""
    return f"{kind.value}-p{partition}"


def _checked(event: AccessEvent | ConsentEvent) -> None:
    if not event.meta.HasField("event_time"):
        raise PermanentError("event.missing_time", f"event {event.meta.event_id} has no event time")
    if _refused_without_patient(event):
        return  # a refused revocation of a record that does not exist: no patient to name
    if not is_ei_patient_id(event.patient_id):
        raise PermanentError("event.bad_patient_id", f"event {event.meta.event_id}: patient id malformed")


def _refused_without_patient(event: AccessEvent | ConsentEvent) -> bool:
    return (isinstance(event, ConsentEvent) and event.change == ConsentEvent.REFUSED
            and not event.patient_id)


async def ingest_access(store: AuditStore, batch: Sequence[Received[AccessEvent]]) -> Appended:
    """One partition's access events, in offset order, appended in one transaction."""
    for received in batch:
        _checked(received.event)
    entries = [access_entry(received.event, received.record.value) for received in batch]
    return await store.append(chain_name(Kind.ACCESS, batch[0].record.partition), entries)


async def ingest_consent(store: AuditStore, batch: Sequence[Received[ConsentEvent]]) -> Appended:
    for received in batch:
        _checked(received.event)
    entries = [consent_entry(received.event, received.record.value) for received in batch]
    return await store.append(chain_name(Kind.CONSENT, batch[0].record.partition), entries)


def review_entry(officer: Claims, target: Entry | None, subject: str, note: str,
                 conclusion: str = "") -> Entry:
    """A compliance officer's follow-up (note and conclusion), itself a record of the chained log."""
    review = {"subject": subject, "note": note, "reviewer": officer.sub, "reviewer_name": officer.name}
    if conclusion:
        review["conclusion"] = conclusion
    payload = json.dumps(review, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return Entry(
        kind=Kind.REVIEW, event_id=str(uuid.uuid4()), event_time=datetime.now(UTC),
        patient_id=target.patient_id if target else "", user_hsa_id=officer.sub,
        care_unit=officer.care_unit or "", care_giver=officer.care_giver or "",
        activity=5, basis=0, outcome=0, purpose="follow-up",  # activity 5: VERIFY
        categories=(), payload=payload, subject=subject,
    )


async def record_review(store: AuditStore, officer: Claims, target: Entry | None, subject: str,
                        note: str, conclusion: str = "") -> Appended:
    return await store.append(REVIEW_CHAIN, [review_entry(officer, target, subject, note, conclusion)])
