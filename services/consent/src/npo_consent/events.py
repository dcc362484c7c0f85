"""Kafka: access events in (each decoded into a LoggedAccess and re-checked, idempotent by event
id), and the outbox's ConsentEvents out as the platform's relay reads them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

from npo_platform.contracts import AccessEvent, ConsentEvent
from npo_platform.contracts.events_pb2 import (
    DATA_FROM_CACHE,
    DATA_FROM_CACHE_SYNCH_FAILED,
    DATA_FROM_SOURCE,
    EMERGENCY,
    EMERGENCY_OPEN,
    PATIENT_SELF,
    REQUESTED,
)
from npo_platform.identifiers import InvalidPatientId, PatientId
from npo_platform.kafka import BatchHandler, PermanentError, Received, serialized
from npo_platform.outbox import Publish

from .domain import EngagementRef, Reader
from .domain_checks import LoggedAccess
from .service import ConsentService
from .store import ConsentStore

# Statuses under which a producer's information reached (or, streamed, was on its way to) the reader.
RELEASED = frozenset({DATA_FROM_SOURCE, DATA_FROM_CACHE, DATA_FROM_CACHE_SYNCH_FAILED, REQUESTED})


def logged_access(event: AccessEvent) -> LoggedAccess:
    """The access an event reports; PermanentError (dead letter) when it cannot be checked."""
    try:
        PatientId.parse(event.patient_id)
    except InvalidPatientId:
        raise PermanentError("access.invalid_patient_id", "patient id is not a valid identity") from None
    if not event.meta.HasField("event_time"):
        raise PermanentError("access.no_event_time", "an access event needs its time")
    actor = event.actor
    released = tuple(
        EngagementRef(str(i), p.data_controller, p.care_unit_hsa_id, p.logical_address, p.social_services)
        for i, p in enumerate(event.producers)
        if p.status in RELEASED
    )
    return LoggedAccess(
        event_id=event.meta.event_id,
        patient_id=event.patient_id,
        at=event.meta.event_time.ToDatetime(tzinfo=UTC),
        reader=Reader(actor.user_hsa_id, actor.care_unit_hsa_id, actor.care_giver_hsa_id, actor.purpose),
        categories=tuple(event.categories),
        emergency=event.basis == EMERGENCY or event.activity == EMERGENCY_OPEN,
        emergency_reason=event.emergency_reason,
        protected_identity=event.protected_identity,
        released=released,
        patient_self=event.basis == PATIENT_SELF,
    )


def access_handler(service: ConsentService) -> BatchHandler[AccessEvent]:
    """The consumer's batch handler: one check per event, each in its own transaction."""

    async def handle(batch: Sequence[Received[AccessEvent]]) -> None:
        for received in batch:
            await service.check(logged_access(received.event))

    return handle


class ConsentOutbox:
    """The store's outbox for npo_platform.outbox.OutboxRelay: events keyed by patient id."""

    def __init__(self, store: ConsentStore) -> None:
        self._store = store

    async def relay(self, publish: Publish, limit: int = 500) -> int:
        async def publish_events(events: Sequence[ConsentEvent]) -> None:
            await publish([serialized(e, e.patient_id) for e in events])

        return await self._store.relay(publish_events, limit)
