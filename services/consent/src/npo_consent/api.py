"""HTTP in, use cases out: authenticated commands, the access decision, the reader's standing
and the violations the re-check of logged accesses found."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from npo_platform.contracts.consent_http import (
    DecisionIn,
    DecisionOut,
    EngagementDecisionOut,
    InForce,
    RecordPolicyOut,
    StandingIn,
    StandingOut,
)
from npo_platform.identity import (
    Claims,
    ClinicianClaims,
    ComplianceOfficerClaims,
    HsaIdStr,
    PatientIdStr,
    Role,
    require_roles,
)
from npo_platform.problems import Problem
from npo_platform.schemas import RequestModel

from . import domain_commands as c
from .domain import Decision, EngagementRef, Kind, Reader, Record, RecordPolicy
from .domain_checks import Violation
from .service import ConsentService

# Relations, consents and protected-identity marks are registered by clinicians; blocks and
# lifts by clinicians or by the patient in person (the patient role, for their own id). Which
# records a caller may touch within the role is the use case's rule (domain_commands.py).
BlockingClaims = Annotated[Claims, Depends(require_roles(Role.CLINICIAN, Role.PATIENT))]
router = APIRouter(prefix="/v1")
DECISION_MAX_BODY = 2 * 1024 * 1024  # up to 5,000 engagements


async def _service(request: Request) -> ConsentService:
    service: ConsentService = request.app.state.consent_service
    return service


Service = Annotated[ConsentService, Depends(_service)]


class _Body(RequestModel):
    """Command bodies: the platform's RequestModel (unknown fields and NUL refused), frozen."""

    model_config = ConfigDict(frozen=True)


class RelationIn(_Body):
    patient_id: PatientIdStr = Field(repr=False)
    care_unit: HsaIdStr | None = None  # default: the registering clinician's unit
    valid_from: AwareDatetime | None = None
    valid_to: AwareDatetime | None = None


class ConsentIn(_Body):
    patient_id: PatientIdStr = Field(repr=False)
    care_unit: HsaIdStr | None = None
    user: HsaIdStr | None = None
    valid_from: AwareDatetime | None = None
    valid_to: AwareDatetime


class BlockIn(_Body):
    patient_id: PatientIdStr = Field(repr=False)
    care_giver: HsaIdStr
    care_unit: HsaIdStr | None = None
    reason: str = Field("", max_length=1000)
    valid_from: AwareDatetime | None = None
    valid_to: AwareDatetime | None = None


class LiftIn(_Body):
    patient_id: PatientIdStr = Field(repr=False)
    block_id: UUID
    reason: str = Field("", max_length=1000)
    valid_to: AwareDatetime
    patient_consent: bool = False
    user: HsaIdStr | None = None
    care_unit: HsaIdStr | None = None
    valid_from: AwareDatetime | None = None


class EmergencyIn(_Body):
    patient_id: PatientIdStr = Field(repr=False)
    reason: str = Field("", max_length=1000)  # mandatory: refused with emergency.reason_required
    valid_to: AwareDatetime | None = None


class ProtectedIdentityIn(_Body):
    patient_id: PatientIdStr = Field(repr=False)
    reason: str = Field("", max_length=1000)


class RecordOut(BaseModel):
    record_id: str
    kind: str
    valid_from: datetime
    valid_to: datetime | None


def _staff(claims: Claims) -> c.Staff:
    patient = claims.patient if Role.PATIENT in claims.roles else None
    return c.Staff(claims.sub, claims.name, claims.care_unit, claims.care_giver, patient,
                   roles=tuple(sorted(claims.roles)), purpose=claims.purpose or "")


def _out(record: Record) -> RecordOut:
    return RecordOut(record_id=record.id, kind=record.kind.value, valid_from=record.valid_from,
                     valid_to=record.valid_to)


async def _register(service: ConsentService, command: c.Command, claims: Claims) -> RecordOut:
    try:
        record = await service.register(command, _staff(claims))
    except c.CommandRejected as rejected:
        raise Problem(rejected.status, rejected.code, rejected.detail) from None
    return _out(record)


@router.post("/relations", status_code=201, tags=["commands"])
async def register_relation(body: RelationIn, claims: ClinicianClaims, service: Service) -> RecordOut:
    command = c.RegisterRelation(body.patient_id, body.care_unit or "", body.valid_from, body.valid_to)
    return await _register(service, command, claims)


@router.post("/consents", status_code=201, tags=["commands"])
async def register_consent(body: ConsentIn, claims: ClinicianClaims, service: Service) -> RecordOut:
    command = c.RegisterConsent(body.patient_id, body.valid_to, body.care_unit, body.user, body.valid_from)
    return await _register(service, command, claims)


@router.post("/blocks", status_code=201, tags=["commands"])
async def register_block(body: BlockIn, claims: BlockingClaims, service: Service) -> RecordOut:
    command = c.RegisterBlock(body.patient_id, body.care_giver, body.care_unit, body.reason,
                              body.valid_from, body.valid_to)
    return await _register(service, command, claims)


@router.post("/lifts", status_code=201, tags=["commands"])
async def register_lift(body: LiftIn, claims: BlockingClaims, service: Service) -> RecordOut:
    command = c.RegisterLift(body.patient_id, str(body.block_id), body.reason, body.valid_to,
                             body.patient_consent, body.user, body.care_unit, body.valid_from)
    return await _register(service, command, claims)


@router.post("/emergency-accesses", status_code=201, tags=["commands"])
async def register_emergency(body: EmergencyIn, claims: ClinicianClaims, service: Service) -> RecordOut:
    command = c.RegisterEmergencyAccess(body.patient_id, body.reason, body.valid_to)
    return await _register(service, command, claims)


@router.post("/protected-identities", status_code=201, tags=["commands"])
async def mark_protected(body: ProtectedIdentityIn, claims: ClinicianClaims, service: Service) -> RecordOut:
    return await _register(service, c.MarkProtectedIdentity(body.patient_id, body.reason), claims)


_REVOCABLE = {
    "relations": Kind.RELATION, "consents": Kind.CONSENT, "blocks": Kind.BLOCK, "lifts": Kind.LIFT,
    "protected-identities": Kind.PROTECTED_IDENTITY,
}


@router.post("/{collection}/{record_id}/revoke", tags=["commands"])
async def revoke(collection: str, record_id: UUID, claims: BlockingClaims, service: Service) -> RecordOut:
    kind = _REVOCABLE.get(collection)
    if kind is None:
        raise Problem(404, "record.not_revocable", "Nothing revocable is kept under that name.")
    try:
        record = await service.revoke(kind, str(record_id), _staff(claims))
    except c.CommandRejected as rejected:
        raise Problem(rejected.status, rejected.code, rejected.detail) from None
    return _out(record)


@router.post("/decisions", tags=["decision"], response_model=DecisionOut)
async def decide(body: DecisionIn, claims: ClinicianClaims, service: Service) -> Response:
    """The reader is the caller's verified token (the query service forwards the clinician's).

    The answer is serialised here, once (FastAPI would validate the model again first).
    """
    reader = Reader(claims.sub, claims.care_unit or "", claims.care_giver or "", claims.purpose or "")
    engagements = [EngagementRef(e.id, e.data_controller, e.care_unit, e.logical_address,
                                 e.social_services) for e in body.engagements]
    decision = await service.decide(reader, body.patient_id, body.categories, engagements)
    return Response(decision_out(decision).model_dump_json(), media_type="application/json")


def decision_out(decision: Decision) -> DecisionOut:
    return DecisionOut(
        outcome=decision.outcome.value, basis=decision.basis.value,
        reason_code=decision.reason.value if decision.reason else None,
        blocked_information_exists=decision.blocked_information_exists,
        protected_identity=decision.protected_identity, protected_fields=list(decision.protected_fields),
        emergency_reason=decision.emergency_reason or None,
        engagements=[
            EngagementDecisionOut(id=e.id, allowed=e.allowed, basis=e.basis.value,
                                  reason_code=e.reason.value if e.reason else None)
            for e in decision.engagements
        ],
        record_policy=_policy_out(decision.record_policy),
    )


def _policy_out(policy: RecordPolicy) -> RecordPolicyOut:
    return RecordPolicyOut(
        own_care_giver=policy.own_care_giver,
        own_closed=policy.own_closed.value if policy.own_closed else None,
        others_closed=policy.others_closed.value if policy.others_closed else None,
        closed_care_givers=sorted(policy.closed_care_givers),
        closed_care_units=sorted(policy.closed_care_units),
        unit_blocked_care_givers=sorted(policy.unit_blocked_care_givers),
    )


@router.get("/violations", tags=["follow-up"])
async def violations(claims: ComplianceOfficerClaims, service: Service) -> list[Violation]:
    """Releases the re-check of logged accesses found the rules would have withheld (the
    follow-ups of every access, emergency and protected identity among them, are the audit's)."""
    return await service.violations()


@router.post("/standing", tags=["standing"])
async def standing(body: StandingIn, claims: ClinicianClaims, service: Service) -> StandingOut:
    """The caller's relation, consent and emergency access in force for the patient (body)."""
    reader = Reader(claims.sub, claims.care_unit or "", claims.care_giver or "", claims.purpose or "")
    found = await service.standing(reader, body.patient_id)
    return StandingOut(care_unit=reader.care_unit, relation=_in_force(found.relation),
                       consent=_in_force(found.consent), emergency=_in_force(found.emergency),
                       protected_identity=found.protected_identity)


def _in_force(record: Record | None) -> InForce | None:
    if record is None:
        return None
    scope = "user" if record.kind is Kind.CONSENT and record.user else "unit"
    return InForce(record_id=record.id, valid_from=record.valid_from, valid_to=record.valid_to,
                   scope=scope)
