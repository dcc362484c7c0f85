"""The pure rules and the re-check, without I/O (the PDL table runs over the database)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from consent_support import ANNA, BO, CG_A, CG_B, ENGAGEMENTS, T0, UA1, UA2, UB1

from npo_consent.domain import (
    CLOSED_POLICY,
    Basis,
    EngagementRef,
    Kind,
    Outcome,
    PatientState,
    Reader,
    Reason,
    Record,
    RecordPolicy,
    decide,
)
from npo_consent.domain_checks import EMERGENCY_WITHOUT_REASON, LoggedAccess, check_access
from npo_consent.service import ConsentService
from npo_consent.store_memory import InMemoryConsentStore

PATIENT = "191212121212"


def rec(kind: Kind, **fields: object) -> Record:
    values: dict[str, object] = {"valid_from": T0, "registered_at": T0, "registered_by": "x", **fields}
    return Record(str(uuid.uuid4()), kind, PATIENT, **values)  # type: ignore[arg-type]


CONSENTED = PatientState((rec(Kind.RELATION, care_unit=UA1), rec(Kind.CONSENT, care_unit=UA1)))


class Exploding(PatientState):
    def in_force(self, kind: Kind, at: object) -> list[Record]:  # type: ignore[override]
        raise RuntimeError("corrupt state")


def test_a_bug_in_the_rules_withholds_everything() -> None:
    decision = decide(ANNA, Exploding(), ["notes"], [ENGAGEMENTS["own_a1"]], T0)
    assert decision.outcome is Outcome.DENIED
    assert decision.reason is Reason.DECISION_ERROR
    assert decision.allowed_ids() == set()


def test_a_record_is_not_in_force_before_it_was_registered() -> None:
    late = rec(Kind.CONSENT, care_unit=UA1, registered_at=T0 + timedelta(hours=1))
    state = PatientState((rec(Kind.RELATION, care_unit=UA1), late))
    b1 = [ENGAGEMENTS["b1"]]
    assert decide(ANNA, state, ["notes"], b1, T0 + timedelta(minutes=30)).reason is Reason.NO_CONSENT
    assert decide(ANNA, state, ["notes"], b1, T0 + timedelta(hours=2)).basis is Basis.CONSENT


def test_no_engagements_is_an_empty_allowed_decision() -> None:
    decision = decide(ANNA, CONSENTED, ["notes"], [], T0)
    assert (decision.outcome, decision.engagements) == (Outcome.ALLOWED, ())


def access(released: tuple[EngagementRef, ...], *, emergency: bool = False, reason: str = "") -> LoggedAccess:
    return LoggedAccess("e1", PATIENT, T0 + timedelta(minutes=1), ANNA, ("notes",), emergency, reason,
                        False, released)


def test_recheck_flags_only_what_the_rules_would_have_withheld() -> None:
    blocked = PatientState((*CONSENTED.records, rec(Kind.BLOCK, care_giver=CG_B, care_unit=UB1)))
    violations = check_access(access((ENGAGEMENTS["b1"], ENGAGEMENTS["b2"])), blocked)
    assert [(v.data_controller, v.engagement_unit, v.reason_code) for v in violations] == [
        (CG_B, UB1, "blocked")]


def test_emergency_access_without_reason_is_flagged() -> None:
    # The follow-up of every emergency access is the audit's (its ``emergency`` flag).
    violations = check_access(access((ENGAGEMENTS["b1"],), emergency=True), CONSENTED)
    assert [v.reason_code for v in violations] == [EMERGENCY_WITHOUT_REASON]


def test_access_to_a_protected_identity_is_no_violation() -> None:
    # Followed up by the audit's ``protected_identity`` flag, not here.
    state = PatientState((*CONSENTED.records, rec(Kind.PROTECTED_IDENTITY)))
    assert check_access(access((ENGAGEMENTS["own_a1"],)), state) == ()


def test_a_patient_reading_their_own_record_is_flagged_only_for_social_services() -> None:
    own = LoggedAccess("e2", PATIENT, T0, Reader("", "", "", ""), (), False, "", True,
                       (ENGAGEMENTS["b1"], ENGAGEMENTS["soc"]), patient_self=True)
    violations = check_access(own, PatientState((rec(Kind.PROTECTED_IDENTITY),)))
    assert [v.reason_code for v in violations] == ["social_services"]


class BrokenStore(InMemoryConsentStore):
    async def load_patient(self, patient_id: str) -> PatientState:
        raise ConnectionError("database down")


async def test_an_unreadable_state_withholds_everything() -> None:
    service = ConsentService(BrokenStore())
    decision = await service.decide(ANNA, PATIENT, ["notes"], [ENGAGEMENTS["own_a1"]])
    assert (decision.outcome, decision.reason) == (Outcome.DENIED, Reason.DECISION_ERROR)


def test_a_decision_opened_by_emergency_carries_the_registered_reason() -> None:
    emergency = rec(Kind.EMERGENCY, user=ANNA.user, care_unit=UA1, reason="unconscious on arrival")
    blocked = PatientState((*CONSENTED.records, rec(Kind.BLOCK, care_giver=CG_B), emergency))
    opened = decide(ANNA, blocked, ["notes"], [ENGAGEMENTS["b1"], ENGAGEMENTS["own_a1"]], T0)
    assert (opened.basis, opened.emergency_reason) == (Basis.EMERGENCY, "unconscious on arrival")
    # Allowed without the emergency (consent, own care giver): no reason is carried.
    assert decide(ANNA, CONSENTED, ["notes"], [ENGAGEMENTS["b1"]], T0).emergency_reason == ""


def policy_of(*records: Record, reader: Reader = ANNA) -> RecordPolicy:
    return decide(reader, PatientState(records), ["notes"], [], T0 + timedelta(minutes=1)).record_policy


def test_the_record_policy_names_what_is_closed_per_care_giver_and_unit() -> None:
    relation, consent = CONSENTED.records
    giver_block = rec(Kind.BLOCK, care_giver=CG_B)
    own_unit_block = rec(Kind.BLOCK, care_giver=CG_A, care_unit=UA2)  # internal block
    readers_unit_block = rec(Kind.BLOCK, care_giver=CG_A, care_unit=UA1)  # the reader's own unit
    own_giver_block = rec(Kind.BLOCK, care_giver=CG_A)  # applies only to other care givers
    policy = policy_of(relation, consent, giver_block, own_unit_block, readers_unit_block,
                       own_giver_block)
    assert policy == RecordPolicy(CG_A, None, None, frozenset({CG_B}), frozenset({UA2}),
                                  frozenset({CG_A}))


def test_a_lift_for_the_reader_or_emergency_access_opens_blocks_in_the_record_policy() -> None:
    relation, consent = CONSENTED.records
    unit_block = rec(Kind.BLOCK, care_giver=CG_B, care_unit=UB1)
    lifted = rec(Kind.LIFT, block_id=unit_block.id, user=ANNA.user)
    assert policy_of(relation, consent, unit_block, lifted).closed_care_units == frozenset()
    assert policy_of(relation, consent, unit_block, lifted, reader=BO).closed_care_units == {UB1}
    emergency = rec(Kind.EMERGENCY, user=ANNA.user, care_unit=UA1, reason="unconscious")
    opened = policy_of(relation, unit_block, emergency)
    assert (opened.closed_care_units, opened.unit_blocked_care_givers) == (frozenset(), frozenset())
    assert opened.others_closed is None  # emergency stands in for the missing consent


def test_the_record_policy_closes_other_care_givers_without_consent_and_all_without_relation() -> None:
    relation, _ = CONSENTED.records
    assert (policy_of(relation).own_closed, policy_of(relation).others_closed) == (
        None, Reason.NO_CONSENT)
    denied = decide(ANNA, PatientState(), ["notes"], [ENGAGEMENTS["own_a1"]], T0)
    assert (denied.outcome, denied.reason) == (Outcome.DENIED, Reason.NO_RELATION)
    assert denied.record_policy == CLOSED_POLICY
    assert CLOSED_POLICY.own_closed is not None
    assert CLOSED_POLICY.others_closed is not None


def test_emergency_opening_a_unit_block_among_an_engagements_records_is_the_basis() -> None:
    relation, consent = CONSENTED.records
    unit_block = rec(Kind.BLOCK, care_giver=CG_B, care_unit=UB1)
    emergency = rec(Kind.EMERGENCY, user=ANNA.user, care_unit=UA1, reason="unconscious")
    unknown = [ENGAGEMENTS["b_unknown_unit"]]
    assert decide(ANNA, PatientState((relation, consent, unit_block)), ["notes"], unknown,
                  T0).basis is Basis.CONSENT
    assert decide(ANNA, PatientState((relation, consent, unit_block, emergency)), ["notes"],
                  unknown, T0).basis is Basis.EMERGENCY
