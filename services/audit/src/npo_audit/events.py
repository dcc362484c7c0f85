"""Kafka handlers: a partition's access or consent events, checked, appended to its chain."""

from __future__ import annotations

from collections.abc import Sequence

from npo_platform.contracts import AccessEvent, ConsentEvent
from npo_platform.identifiers import is_ei_patient_id
from npo_platform.kafka import PermanentError, Received

from .domain import Kind, access_entry, consent_entry
from .store import Appended, AuditStore


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
