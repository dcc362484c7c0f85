"""The reader's standing with a patient: which relation, consent and emergency access are in
force for the reader's unit (or the reader personally) right now.

The clinician's web view shows this before it asks for an overview, so the reader knows what
to register. It tells only the reader's own records; blocks are never listed (the overview says
*that* blocked information exists, never where).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from npo_platform.contracts.consent_http import InForce, StandingIn, StandingOut
from npo_platform.identity import ClinicianClaims

from .domain import Kind, PatientState, Reader, Record, covers
from .handlers import ConsentService

router = APIRouter(prefix="/v1", tags=["standing"])


@dataclass(frozen=True, slots=True)
class Standing:
    relation: Record | None
    consent: Record | None
    emergency: Record | None
    protected_identity: bool


def standing_of(reader: Reader, state: PatientState, at: datetime) -> Standing:
    """The reader's records in force at ``at``: the longest-lasting one of each kind."""
    relations = [r for r in state.in_force(Kind.RELATION, at) if r.care_unit == reader.care_unit]
    consents = [c for c in state.in_force(Kind.CONSENT, at) if covers(c, reader)]
    emergencies = [e for e in state.in_force(Kind.EMERGENCY, at)
                   if e.user == reader.user and e.care_unit == reader.care_unit]
    return Standing(_longest(relations), _longest(consents), _longest(emergencies),
                    bool(state.in_force(Kind.PROTECTED_IDENTITY, at)))


def _longest(records: list[Record]) -> Record | None:
    return max(records, key=lambda r: (r.valid_to is None, r.valid_to or r.valid_from), default=None)


def _in_force(record: Record | None) -> InForce | None:
    if record is None:
        return None
    scope = "user" if record.kind is Kind.CONSENT and record.user else "unit"
    return InForce(record_id=record.id, valid_from=record.valid_from, valid_to=record.valid_to,
                   scope=scope)


async def _service(request: Request) -> ConsentService:
    service: ConsentService = request.app.state.consent_service
    return service


@router.post("/standing")
async def standing(body: StandingIn, claims: ClinicianClaims,
                   service: Annotated[ConsentService, Depends(_service)]) -> StandingOut:
    """The caller's relation, consent and emergency access in force for the patient (body)."""
    reader = Reader(claims.sub, claims.care_unit or "", claims.care_giver or "", claims.purpose or "")
    found = standing_of(reader, await service.store.load_patient(body.patient_id), service.clock())
    return StandingOut(care_unit=reader.care_unit, relation=_in_force(found.relation),
                       consent=_in_force(found.consent), emergency=_in_force(found.emergency),
                       protected_identity=found.protected_identity)
