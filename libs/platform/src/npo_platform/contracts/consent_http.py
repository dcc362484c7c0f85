"""The consent service's HTTP contract, defined once: the access decision (``POST
/v1/decisions``) and the reader's standing (``POST /v1/standing``).

The consent service reads the requests and answers with these models; the query service sends
the requests and reads the answers with the same ones, as proto/ defines the events. Field names
are snake_case on the wire. Answer fields a consent service always sends but an older one might
not have carry defaults, so a reader stays lenient where it always was; ``record_policy`` has
none: a client that cannot apply it must not release records.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from npo_platform.identity import PatientIdStr
from npo_platform.schemas import RequestModel


class _Body(RequestModel):
    """Request bodies: the platform's RequestModel (unknown fields and NUL refused), frozen."""

    model_config = ConfigDict(frozen=True)


class EngagementIn(_Body):
    """One engagement (producer and care giver, per category) the reader wants decided."""

    id: str = Field(min_length=1, max_length=200)
    data_controller: str = Field("", max_length=64)
    care_unit: str = Field("", max_length=64)
    logical_address: str = Field("", max_length=64)
    social_services: bool = False


class DecisionIn(_Body):
    patient_id: PatientIdStr = Field(repr=False)
    categories: list[str] = Field(max_length=17)
    engagements: list[EngagementIn] = Field(max_length=5000)


class EngagementDecisionOut(BaseModel):
    id: str
    allowed: bool
    basis: str
    reason_code: str | None = None


class RecordPolicyOut(BaseModel):
    """The decision's rules per record: a reason code closes, null opens (see the consent
    service's domain.RecordPolicy)."""

    own_care_giver: str
    own_closed: str | None
    others_closed: str | None
    closed_care_givers: list[str]
    closed_care_units: list[str]
    unit_blocked_care_givers: list[str]


class DecisionOut(BaseModel):
    outcome: str  # allowed | partial | denied
    basis: str
    reason_code: str | None = None
    blocked_information_exists: bool = False
    protected_identity: bool = False
    protected_fields: list[str] = []
    emergency_reason: str | None = None  # set when information is opened by emergency access
    engagements: list[EngagementDecisionOut]
    # Applied by the query service to every record a producer returns (blocks per care unit,
    # inner secrecy); a client that does not apply it must not release records.
    record_policy: RecordPolicyOut


class StandingIn(_Body):
    patient_id: PatientIdStr = Field(repr=False)


class InForce(BaseModel):
    record_id: str
    valid_from: datetime
    valid_to: datetime | None
    scope: str  # "unit" or "user" (a consent naming the reader personally)


class StandingOut(BaseModel):
    """The caller's relation, consent and emergency access in force for the patient (each the
    longest-lasting of its kind), and whether the patient's identity is protected."""

    care_unit: str
    relation: InForce | None
    consent: InForce | None
    emergency: InForce | None
    protected_identity: bool
