"""Who may register and who may revoke each kind of record (design.md §5.5); pure rules, no I/O.

A role lets a caller reach a command; these rules bind the command to the caller's own scope,
checked against the record itself (for a revocation: the stored record, never the request).
A refusal is a ``CommandRejected`` with status 403 and a stable code, raised inside the use
case, so it is handled like every other refused command. The README's role-and-scope matrix
lists the rules with the law behind each.
"""

from __future__ import annotations

from .commands import CommandRejected, Staff
from .domain import Kind, Record

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
