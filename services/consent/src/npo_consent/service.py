"""Use cases: commands → records + ConsentEvents, decisions, standing, expiry and access checks.

A command the rules refuse is an event too: every ``CommandRejected`` raised while registering or
revoking is written as a REFUSED ConsentEvent (who, which patient, what, why) to the outbox
before the refusal goes back to the caller, so the audit log holds every attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from npo_platform.categories import CATEGORIES
from npo_platform.contracts import ConsentEvent
from npo_platform.contracts.events_pb2 import Actor
from npo_platform.events import new_meta

from .domain import (
    Decision,
    EngagementRef,
    Kind,
    Reader,
    Reason,
    Record,
    Standing,
    decide,
    deny_all,
    standing_of,
)
from .domain_checks import LoggedAccess, Violation, check_access
from .domain_commands import (
    Command,
    CommandRejected,
    Staff,
    check_register,
    check_revoke,
    kind_of,
    new_record,
)
from .store import ConsentStore

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
KNOWN_CATEGORIES = frozenset(category.key for category in CATEGORIES)
SOURCE = "npo-consent"

_SUBJECTS = {
    Kind.RELATION: ConsentEvent.PATIENT_RELATION,
    Kind.CONSENT: ConsentEvent.CONSENT,
    Kind.BLOCK: ConsentEvent.BLOCK,
    Kind.LIFT: ConsentEvent.BLOCK_LIFT,
    Kind.EMERGENCY: ConsentEvent.EMERGENCY_ACCESS,
    Kind.PROTECTED_IDENTITY: ConsentEvent.PROTECTED_IDENTITY,
}


def utc_now() -> datetime:
    return datetime.now(UTC)


def consent_event(
    record: Record, change: ConsentEvent.Change, at: datetime, by: Staff | None
) -> ConsentEvent:
    """The ConsentEvent announcing ``change`` of ``record`` (no patient id outside the payload)."""
    event = ConsentEvent(
        meta=new_meta(SOURCE, at=at), subject=_SUBJECTS[record.kind], change=change,
        patient_id=record.patient_id, record_id=record.id, care_giver_hsa_id=record.care_giver or "",
        care_unit_hsa_id=record.care_unit or "", user_hsa_id=record.user or "", reason=record.reason,
    )
    event.valid_from.FromDatetime(record.valid_from)
    if record.valid_to is not None:
        event.valid_to.FromDatetime(record.valid_to)
    if by is not None:
        event.actor.CopyFrom(_actor(by))
    return event


def refused_event(attempted: Record, change: ConsentEvent.Change, rejected: CommandRejected,
                  at: datetime, by: Staff) -> ConsentEvent:
    """The REFUSED ConsentEvent of a command: ``attempted`` holds what was asked for (kind,
    patient, scope, reason; its id names the record a revocation asked for), ``change`` the
    change asked for."""
    return ConsentEvent(
        meta=new_meta(SOURCE, at=at), subject=_SUBJECTS[attempted.kind],
        change=ConsentEvent.REFUSED, attempted=change, patient_id=attempted.patient_id,
        record_id=attempted.id, care_giver_hsa_id=attempted.care_giver or "",
        care_unit_hsa_id=attempted.care_unit or "", user_hsa_id=attempted.user or "",
        reason=attempted.reason, actor=_actor(by), refusal_code=rejected.code,
        refusal_detail=rejected.detail,
    )


def _actor(by: Staff) -> Actor:
    return Actor(user_hsa_id=by.user, name=by.name, care_unit_hsa_id=by.care_unit or "",
                 care_giver_hsa_id=by.care_giver or "", roles=list(by.roles), purpose=by.purpose)


def _asked_for(command: Command, by: Staff, now: datetime) -> Record:
    """What a refused registration asked for, as far as the command says it."""

    def text(name: str) -> str | None:
        value = getattr(command, name, None)
        return value if isinstance(value, str) and value else None

    return Record(id="", kind=kind_of(command), patient_id=command.patient_id, valid_from=now,
                  registered_at=now, registered_by=by.user, care_giver=text("care_giver"),
                  care_unit=text("care_unit"), user=text("user"), block_id=text("block_id"),
                  reason=text("reason") or "")


@dataclass
class ConsentService:
    """Everything the API, the consumer and the periodic tasks do, over one store."""

    store: ConsentStore
    clock: Clock = utc_now
    emergency_window: timedelta = timedelta(hours=4)
    on_change: Callable[[], None] | None = None  # wakes the outbox relay

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def register(self, command: Command, by: Staff) -> Record:
        now = self.clock()
        try:
            state = await self.store.load_patient(command.patient_id)
            record = new_record(command, by, now, state, self.emergency_window)
            check_register(record, by)
        except CommandRejected as rejected:
            await self._refused(_asked_for(command, by, now), ConsentEvent.REGISTERED, rejected, by)
            raise
        await self.store.add(record, consent_event(record, ConsentEvent.REGISTERED, now, by))
        self._changed()
        return record

    async def revoke(self, kind: Kind, record_id: str, by: Staff) -> Record:
        now = self.clock()
        record = await self.store.get(record_id)
        # What was asked for: the record when found, else only its kind and id (no patient).
        asked = record if record is not None and record.kind is kind else Record(
            id=record_id, kind=kind, patient_id="", valid_from=now, registered_at=now,
            registered_by=by.user)
        try:
            if record is None or record.kind is not kind:
                raise CommandRejected("record.not_found", f"no {kind.value} with that id", 404)
            check_revoke(record, by)
            event = consent_event(record, ConsentEvent.REVOKED, now, by)
            if not await self.store.revoke(record_id, now, by.user, event):
                raise CommandRejected("record.already_revoked",
                                      f"the {kind.value} was revoked before", 409)
        except CommandRejected as rejected:
            await self._refused(asked, ConsentEvent.REVOKED, rejected, by)
            raise
        self._changed()
        return record

    async def _refused(self, asked: Record, change: ConsentEvent.Change,
                       rejected: CommandRejected, by: Staff) -> None:
        """Write the refusal's event to the outbox (durably, before the caller is answered)."""
        await self.store.add_event(refused_event(asked, change, rejected, self.clock(), by))
        self._changed()

    async def decide(
        self,
        reader: Reader,
        patient_id: str,
        categories: Sequence[str],
        engagements: Sequence[EngagementRef],
        at: datetime | None = None,
    ) -> Decision:
        """Fails closed: when the state cannot be read, every engagement is withheld."""
        try:
            state = await self.store.load_patient(patient_id)
        except Exception:
            log.exception("consent state unavailable: denying")
            return deny_all(engagements, Reason.DECISION_ERROR)
        return decide(reader, state, categories, engagements, at or self.clock(), KNOWN_CATEGORIES)

    async def expire(self) -> int:
        """Announce every consent, lift, relation (or other windowed record) that ran out."""
        now = self.clock()
        expired = await self.store.expire_due(
            now, lambda record: consent_event(record, ConsentEvent.EXPIRED, record.valid_to or now, None)
        )
        if expired:
            self._changed()
        return len(expired)

    async def check(self, access: LoggedAccess) -> bool:
        """Violation flags for one logged access; False when seen before."""
        state = await self.store.load_patient(access.patient_id)
        return await self.store.save_check(access.event_id, check_access(access, state))

    async def violations(self) -> list[Violation]:
        return await self.store.violations()

    async def standing(self, reader: Reader, patient_id: str) -> Standing:
        """The reader's relation, consent and emergency access in force for the patient now."""
        return standing_of(reader, await self.store.load_patient(patient_id), self.clock())
