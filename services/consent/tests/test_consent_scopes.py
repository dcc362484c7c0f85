"""The role-and-scope matrix (domain_commands.py, README): who may register and revoke each kind of record.

Unit tests over the use case with the in-memory store; the same refusals over the whole running
stack are in tests/test_security_scopes.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from consent_support import (
    ANNA,
    BO,
    CECILIA,
    CG_B,
    ENGAGEMENTS,
    ERIK,
    T0,
    UA1,
    UB1,
    Clock,
    new_patient,
    staff,
    the_patient,
)

from npo_consent import domain_commands as c
from npo_consent.domain import Kind, Reason
from npo_consent.service import ConsentService
from npo_consent.store_memory import InMemoryConsentStore

LATER = T0 + timedelta(days=7)


def service() -> ConsentService:
    return ConsentService(InMemoryConsentStore(), clock=Clock())


REGISTER = [
    ("relation-own-unit", lambda p: c.RegisterRelation(p, ""), staff(ANNA), None),
    ("relation-other-unit", lambda p: c.RegisterRelation(p, UB1), staff(ANNA), "relation.not_own_unit"),
    ("consent-own-unit", lambda p: c.RegisterConsent(p, LATER, UA1), staff(ANNA), None),
    ("consent-other-unit", lambda p: c.RegisterConsent(p, LATER, UB1), staff(ANNA), "consent.not_own_unit"),
    ("block-by-holder", lambda p: c.RegisterBlock(p, CG_B), staff(ERIK), None),
    ("block-by-the-patient", lambda p: c.RegisterBlock(p, CG_B), None, None),
    ("block-on-another-giver", lambda p: c.RegisterBlock(p, CG_B), staff(ANNA), "block.not_own_care_giver"),
    ("block-by-another-patient", lambda p: c.RegisterBlock(p, CG_B), the_patient(new_patient()),
     "block.not_own_care_giver"),
]


@pytest.mark.parametrize(("make", "by", "refused"), [case[1:] for case in REGISTER],
                         ids=[case[0] for case in REGISTER])
async def test_a_record_is_registered_only_within_the_callers_scope(
    make: object, by: c.Staff | None, refused: str | None
) -> None:
    patient = new_patient()
    command = make(patient)  # type: ignore[operator]
    who = by or the_patient(patient)
    if refused is None:
        assert (await service().register(command, who)).patient_id == patient
        return
    with pytest.raises(c.CommandRejected) as rejected:
        await service().register(command, who)
    assert (rejected.value.code, rejected.value.status) == (refused, 403)


async def test_a_named_person_consent_covers_that_person_only_at_the_registering_unit() -> None:
    consents, patient = service(), new_patient()
    await consents.register(c.RegisterRelation(patient, ""), staff(ERIK))
    named = await consents.register(c.RegisterConsent(patient, LATER, user=ERIK.user), staff(ANNA))
    assert (named.user, named.care_unit) == (ERIK.user, UA1)
    as_erik = await consents.decide(ERIK, patient, ["notes"], [ENGAGEMENTS["own_a1"]])
    assert as_erik.reason is Reason.NO_CONSENT


async def test_a_lift_is_registered_by_the_blocks_care_giver_or_the_patient() -> None:
    consents, patient = service(), new_patient()
    block = await consents.register(c.RegisterBlock(patient, CG_B), the_patient(patient))
    lift = c.RegisterLift(patient, block.id, "patient asked", T0 + timedelta(hours=1), True, user=ANNA.user)
    with pytest.raises(c.CommandRejected) as rejected:
        await consents.register(lift, staff(ANNA))  # the reader cannot open it for themself
    assert rejected.value.code == "lift.not_own_care_giver"
    assert (await consents.register(lift, staff(ERIK))).care_giver == CG_B
    assert (await consents.register(lift, the_patient(patient))).kind is Kind.LIFT


REVOKE = [
    ("relation-by-its-unit", Kind.RELATION, staff(ANNA), staff(BO), None),
    ("relation-by-another-giver", Kind.RELATION, staff(ANNA), staff(ERIK), "record.out_of_scope"),
    ("consent-by-its-unit", Kind.CONSENT, staff(ANNA), staff(BO), None),
    ("consent-by-another-unit", Kind.CONSENT, staff(ANNA), staff(CECILIA), "record.out_of_scope"),
    ("consent-by-the-patient", Kind.CONSENT, staff(ANNA), None, "record.out_of_scope"),
    ("block-by-holder", Kind.BLOCK, None, staff(ERIK), None),
    ("block-by-the-patient", Kind.BLOCK, staff(ERIK), None, None),
    ("block-by-another-giver", Kind.BLOCK, None, staff(ANNA), "record.out_of_scope"),
    ("block-by-another-patient", Kind.BLOCK, None, the_patient(new_patient()), "record.out_of_scope"),
    ("protected-by-its-giver", Kind.PROTECTED_IDENTITY, staff(ANNA), staff(CECILIA), None),
    ("protected-by-another-giver", Kind.PROTECTED_IDENTITY, staff(ANNA), staff(ERIK),
     "record.out_of_scope"),
]


def _command(kind: Kind, patient: str) -> c.Command:
    return {
        Kind.RELATION: c.RegisterRelation(patient, ""),
        Kind.CONSENT: c.RegisterConsent(patient, LATER, UA1),
        Kind.BLOCK: c.RegisterBlock(patient, CG_B),
        Kind.PROTECTED_IDENTITY: c.MarkProtectedIdentity(patient),
    }[kind]


@pytest.mark.parametrize(("kind", "registrar", "by", "refused"), [case[1:] for case in REVOKE],
                         ids=[case[0] for case in REVOKE])
async def test_a_record_is_revoked_only_within_the_callers_scope(
    kind: Kind, registrar: c.Staff | None, by: c.Staff | None, refused: str | None
) -> None:
    consents, patient = service(), new_patient()
    record = await consents.register(_command(kind, patient), registrar or the_patient(patient))
    who = by or the_patient(patient)
    if refused is None:
        assert (await consents.revoke(kind, record.id, who)).id == record.id
        return
    with pytest.raises(c.CommandRejected) as rejected:
        await consents.revoke(kind, record.id, who)
    assert (rejected.value.code, rejected.value.status) == (refused, 403)
