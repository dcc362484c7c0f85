"""Second line of defence: re-check a logged access against the rules as they stood; no I/O.

Only what this service alone can judge: a release its rules would have withheld at the time.
The follow-ups of every access (emergency access, protected identity, the sample checks) are
the audit service's, which follows up the access log (design.md §3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .domain import Decision, EngagementRef, PatientState, Reader, Reason, decide

# Violation codes beyond the decision's own reason codes.
EMERGENCY_WITHOUT_REASON = "emergency_without_reason"


@dataclass(frozen=True, slots=True)
class LoggedAccess:
    """What an access event says happened: who read what, on which basis, and when."""

    event_id: str
    patient_id: str
    at: datetime
    reader: Reader
    categories: tuple[str, ...]
    emergency: bool
    emergency_reason: str
    protected_identity: bool
    released: tuple[EngagementRef, ...]  # producers whose information reached the reader
    patient_self: bool = False  # the patient reading their own record (no PDL reader rules)


@dataclass(frozen=True, slots=True)
class Violation:
    access_event_id: str
    patient_id: str
    user: str
    care_unit: str
    data_controller: str
    engagement_unit: str
    reason_code: str
    access_time: datetime


def check_access(access: LoggedAccess, state: PatientState) -> tuple[Violation, ...]:
    """Every release the decision would not have allowed, and an emergency without a reason.

    A patient reading their own record is outside the reader rules: only a social-services
    release is flagged.
    """
    if access.patient_self:
        social = [e for e in access.released if e.social_services]
        return tuple(_violation(access, e, str(Reason.SOCIAL_SERVICES)) for e in social)
    # The logged categories may be empty; that must not turn a release into "no categories".
    categories = access.categories or ("*",)
    decision = decide(access.reader, state, categories, access.released, access.at)
    return _violations(access, decision)


def _violations(access: LoggedAccess, decision: Decision) -> tuple[Violation, ...]:
    by_id = {e.id: e for e in access.released}
    found = [
        _violation(access, by_id[d.id], str(d.reason)) for d in decision.engagements if not d.allowed
    ]
    if access.emergency and not access.emergency_reason.strip():
        unit = access.reader.care_unit
        found.append(_violation(access, EngagementRef("", "", unit), EMERGENCY_WITHOUT_REASON))
    return tuple(found)


def _violation(access: LoggedAccess, engagement: EngagementRef, code: str) -> Violation:
    return Violation(
        access.event_id, access.patient_id, access.reader.user, access.reader.care_unit,
        engagement.data_controller, engagement.care_unit or engagement.logical_address, code,
        access.at,
    )
