"""Commands that change consent state, their validation into new records, and who may register
and who may revoke each kind of record (design.md §5.5); no I/O.

Scopes: a role lets a caller reach a command; these rules bind the command to the caller's own
scope, checked against the record itself (for a revocation: the stored record, never the
request). A refusal is a ``CommandRejected`` with status 403 and a stable code, raised inside
the use case, so it is handled like every other refused command. The README's role-and-scope
matrix lists the rules with the law behind each.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from .domain import Kind, PatientState, Record

MAX_EMERGENCY_WINDOW = timedelta(hours=24)


class CommandRejected(Exception):
    """A command the rules refuse; ``code`` is stable, ``status`` the HTTP status to answer."""

    def __init__(self, code: str, detail: str, status: int = 422) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.status = status


@dataclass(frozen=True, slots=True)
class Staff:
    """Who registers or revokes (from the token): recorded on the record and in the event.

    ``patient`` is set when the caller is that patient in person, through a patient-facing
    channel (the patient role, for their own patient id only).
    """

    user: str
    name: str
    care_unit: str | None
    care_giver: str | None
    patient: str | None = None
    roles: tuple[str, ...] = ()  # in the event only: the audit's record of who acted in which role
    purpose: str = ""


@dataclass(frozen=True, slots=True)
class RegisterRelation:
    patient_id: str
    care_unit: str  # empty: the registering clinician's unit
    valid_from: datetime | None = None
    valid_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class RegisterConsent:
    """Consent for a care unit, or (exceptionally) for one named user; always for a period."""

    patient_id: str
    valid_to: datetime
    care_unit: str | None = None
    user: str | None = None
    valid_from: datetime | None = None


@dataclass(frozen=True, slots=True)
class RegisterBlock:
    """A block of a care giver's information, or of one of its units (also internally)."""

    patient_id: str
    care_giver: str
    care_unit: str | None = None
    reason: str = ""
    valid_from: datetime | None = None
    valid_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class RegisterLift:
    """A temporary lift of one block for one reader or one unit; needs the patient's consent."""

    patient_id: str
    block_id: str
    reason: str
    valid_to: datetime
    patient_consent: bool
    user: str | None = None
    care_unit: str | None = None
    valid_from: datetime | None = None


@dataclass(frozen=True, slots=True)
class RegisterEmergencyAccess:
    """Emergency access by the registering clinician, at their unit, for a short window."""

    patient_id: str
    reason: str
    valid_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class MarkProtectedIdentity:
    patient_id: str
    reason: str = ""


Command = (
    RegisterRelation | RegisterConsent | RegisterBlock | RegisterLift | RegisterEmergencyAccess
    | MarkProtectedIdentity
)


def new_record(command: Command, by: Staff, now: datetime, state: PatientState,
               emergency_window: timedelta) -> Record:
    """The record a valid command creates; raises CommandRejected otherwise."""
    base = Record(id=str(uuid.uuid4()), kind=Kind.RELATION, patient_id=command.patient_id,
                  valid_from=now, registered_at=now, registered_by=by.user)
    match command:
        case RegisterRelation():
            return _window(_relation(command, base, by), command.valid_from, command.valid_to)
        case RegisterConsent():
            return _window(_consent(command, base, by), command.valid_from, command.valid_to)
        case RegisterBlock():
            return _window(_block(command, base), command.valid_from, command.valid_to)
        case RegisterLift():
            return _window(_lift(command, base, state, now), command.valid_from, command.valid_to)
        case RegisterEmergencyAccess():
            return _emergency(command, base, by, now, emergency_window)
        case MarkProtectedIdentity():
            # The registering care giver is kept: it (and only it) may revoke the mark.
            return replace(base, kind=Kind.PROTECTED_IDENTITY, care_giver=by.care_giver,
                           reason=command.reason.strip())


def _window(record: Record, valid_from: datetime | None, valid_to: datetime | None) -> Record:
    start = valid_from or record.valid_from
    end = valid_to if valid_to is not None else record.valid_to
    if end is not None and end <= start:
        raise CommandRejected("validity.empty", "valid_to must be after valid_from")
    return replace(record, valid_from=start, valid_to=end)


def _relation(command: RegisterRelation, base: Record, by: Staff) -> Record:
    unit = command.care_unit or by.care_unit or ""
    _require(unit, "relation.unit_required", "a relation names the reader's care unit")
    return replace(base, kind=Kind.RELATION, care_unit=unit)


def _consent(command: RegisterConsent, base: Record, by: Staff) -> Record:
    """A named-person consent keeps the registering unit: it covers that person at that unit."""
    if bool(command.care_unit) == bool(command.user):
        raise CommandRejected("consent.scope", "a consent covers either a care unit or one named user")
    unit = command.care_unit or by.care_unit
    return replace(base, kind=Kind.CONSENT, care_unit=unit or None, user=command.user or None)


def _block(command: RegisterBlock, base: Record) -> Record:
    _require(command.care_giver, "block.care_giver_required", "a block names the care giver")
    return replace(base, kind=Kind.BLOCK, care_giver=command.care_giver,
                   care_unit=command.care_unit or None, reason=command.reason.strip())


def _lift(command: RegisterLift, base: Record, state: PatientState, now: datetime) -> Record:
    if not command.patient_consent:
        raise CommandRejected("lift.consent_required", "a block is lifted only with the patient's consent")
    _require(command.reason.strip(), "lift.reason_required", "a lift needs a reason")
    if bool(command.user) == bool(command.care_unit):
        raise CommandRejected("lift.scope", "a lift opens a block for either one reader or one unit")
    blocks = [r for r in state.in_force(Kind.BLOCK, now) if r.id == command.block_id]
    if not blocks:
        raise CommandRejected("lift.block_not_found", "no block in force with that id for the patient", 404)
    return replace(base, kind=Kind.LIFT, block_id=command.block_id, user=command.user or None,
                   care_unit=command.care_unit or None, care_giver=blocks[0].care_giver,
                   reason=command.reason.strip())


def _emergency(command: RegisterEmergencyAccess, base: Record, by: Staff, now: datetime,
               window: timedelta) -> Record:
    _require(command.reason.strip(), "emergency.reason_required", "emergency access needs a reason")
    if not by.care_unit:
        raise CommandRejected("emergency.unit_required", "the reader's care unit is unknown", 403)
    end = command.valid_to or now + window
    if end <= now or end - now > MAX_EMERGENCY_WINDOW:
        raise CommandRejected("emergency.window", "emergency access lasts at most 24 hours")
    return replace(base, kind=Kind.EMERGENCY, user=by.user, care_unit=by.care_unit,
                   care_giver=by.care_giver, reason=command.reason.strip(), valid_to=end)


def _require(value: str, code: str, detail: str) -> None:
    if not value:
        raise CommandRejected(code, detail)



_KINDS: dict[type, Kind] = {
    RegisterRelation: Kind.RELATION, RegisterConsent: Kind.CONSENT, RegisterBlock: Kind.BLOCK,
    RegisterLift: Kind.LIFT, RegisterEmergencyAccess: Kind.EMERGENCY,
    MarkProtectedIdentity: Kind.PROTECTED_IDENTITY,
}


def kind_of(command: Command) -> Kind:
    """The kind of record ``command`` would register."""
    return _KINDS[type(command)]


OUT_OF_SCOPE = "record.out_of_scope"


def check_register(record: Record, by: Staff) -> None:
    """Refuse a new record outside the registering caller's scope."""
    match record.kind:
        case Kind.RELATION if not _own_unit(record, by):
            raise CommandRejected("relation.not_own_unit",
                                  "A clinician registers relations for their own unit.", 403)
        case Kind.CONSENT if not _own_unit(record, by):
            raise CommandRejected("consent.not_own_unit", "A consent is given to the unit (or a "
                                  "person of it) that registers it.", 403)
        case Kind.BLOCK if not (_the_patient(record, by) or _holder(record, by)):
            raise CommandRejected("block.not_own_care_giver", "A block is placed by the care "
                                  "giver holding the information, or by the patient.", 403)
        case Kind.LIFT if not (_the_patient(record, by) or _holder(record, by)):
            raise CommandRejected("lift.not_own_care_giver", "A block is lifted by the care giver "
                                  "holding the information, or by the patient.", 403)
        case _:
            return


def check_revoke(record: Record, by: Staff) -> None:
    """Refuse to revoke a stored record outside the caller's scope."""
    if not _may_revoke(record, by):
        raise CommandRejected(OUT_OF_SCOPE, f"This {record.kind.value} is not the caller's to revoke.",
                              403)


def _may_revoke(record: Record, by: Staff) -> bool:
    match record.kind:
        case Kind.RELATION | Kind.CONSENT:
            # A named-person consent registered before it carried its unit: that person only.
            return _own_unit(record, by) if record.care_unit else bool(record.user) and record.user == by.user
        case Kind.BLOCK | Kind.LIFT:
            return _the_patient(record, by) or _holder(record, by)
        case Kind.PROTECTED_IDENTITY:
            return _holder(record, by) if record.care_giver else record.registered_by == by.user
        case _:
            return False


def _own_unit(record: Record, by: Staff) -> bool:
    return by.care_unit is not None and record.care_unit == by.care_unit


def _holder(record: Record, by: Staff) -> bool:
    """The caller works for the care giver the record names (for a lift: its block's)."""
    return by.care_giver is not None and record.care_giver == by.care_giver


def _the_patient(record: Record, by: Staff) -> bool:
    """The caller is the patient in person, through a patient-facing channel."""
    return by.patient is not None and record.patient_id == by.patient
