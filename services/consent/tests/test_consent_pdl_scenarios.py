"""PDL scenarios, one row per case, over the real PostgreSQL store (design.md §5.5, issue 5).

Each row registers state through the service's commands (as the HTTP API does), at times set
by a test clock, then asks for a decision as of the final time. ``expect`` maps each engagement
asked for to its basis when released, or to its reason code when withheld.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from consent_support import (
    ANNA,
    ANNA_ADMIN,
    BO,
    CECILIA,
    CG_A,
    CG_B,
    ENGAGEMENTS,
    ERIK,
    MAJA,
    UA1,
    UA2,
    UB1,
    UB2,
    UM1,
    Clock,
    Ctx,
    Step,
    advance,
    block,
    consent,
    emergency,
    lift,
    new_patient,
    protect,
    relation,
    revoke,
)

from npo_consent.domain import Kind, Outcome, Reader
from npo_consent.service import ConsentService
from npo_consent.store_pg import PostgresConsentStore, open_store

pytestmark = pytest.mark.integration

OWN, CONSENT, EMERGENCY = "own_care_giver", "consent", "emergency"
NO_RELATION, NO_CONSENT, BLOCKED, SOCIAL = "no_relation", "no_consent", "blocked", "social_services"
RC = (relation(), consent())  # relation with Anna's unit and consent for it


@dataclass(frozen=True)
class Case:
    id: str
    steps: tuple[Step, ...]
    expect: dict[str, str]
    reader: Reader = ANNA
    blocked: bool = False
    protected: bool = False
    categories: tuple[str, ...] = ("diagnoses", "medications")
    reason: str | None = None  # the whole decision's reason code, when checked
    closed_units: tuple[str, ...] | None = None  # the record policy's closed units, when checked


CASES = [
    # --- own care giver, relation, consent ---------------------------------------------------
    # Inner secrecy (PDL 4 kap. 1 §): every read needs a relation, the own care giver's too.
    Case("own care giver without relation is denied (inner secrecy)", (),
         {"own_a1": NO_RELATION, "own_a2": NO_RELATION}, reason=NO_RELATION),
    Case("own care giver needs a relation but no consent", (relation(),),
         {"own_a1": OWN, "own_a2": OWN}),
    Case("emergency access stands in for the relation at the own care giver", (emergency(),),
         {"own_a1": EMERGENCY}),
    Case("other care giver without relation", (), {"own_a1": NO_RELATION, "b1": NO_RELATION},
         reason=NO_RELATION),
    Case("a relation of another unit of the own care giver does not count", (relation(UA2),),
         {"own_a1": NO_RELATION, "b1": NO_RELATION}),
    Case("relation without consent", (relation(),), {"b1": NO_CONSENT}, reason=NO_CONSENT),
    Case("consent without relation", (consent(),), {"b1": NO_RELATION}),
    Case("relation and unit consent", RC, {"own_a1": OWN, "b1": CONSENT, "b2": CONSENT}),
    Case("consent for another unit of the same care giver", (relation(), consent(UA2)), {"b1": NO_CONSENT}),
    Case("relation with another unit", (relation(UA2), consent()), {"b1": NO_RELATION}),
    Case("named-person consent covers that person", (relation(), consent(user=ANNA.user)), {"b1": CONSENT}),
    Case("named-person consent does not cover a colleague", (relation(), consent(user=ANNA.user)),
         {"b1": NO_CONSENT}, reader=BO),
    Case("unit consent covers a colleague at the unit", RC, {"b1": CONSENT}, reader=BO),
    Case("revoked consent denies at once", (*RC, revoke("consent", Kind.CONSENT)), {"b1": NO_CONSENT}),
    Case("expired consent", (*RC, advance(days=31)), {"b1": NO_CONSENT}),
    Case("consent not yet in force", (relation(), consent(starts_in_days=2)), {"b1": NO_CONSENT}),
    Case("expired relation", (relation(days=1), consent(), advance(days=2)), {"b1": NO_RELATION}),
    Case("revoked relation", (*RC, revoke("relation", Kind.RELATION)), {"b1": NO_RELATION}),
    # --- blocks and temporary lifts ----------------------------------------------------------
    Case("care-giver block beats consent", (*RC, block(CG_B)),
         {"own_a1": OWN, "b1": BLOCKED, "b2": BLOCKED}, blocked=True, reason=BLOCKED),
    Case("unit block hides only that unit", (*RC, block(CG_B, UB1)), {"b1": BLOCKED, "b2": CONSENT},
         blocked=True),
    Case("block beats named-person consent", (relation(), consent(user=ANNA.user), block(CG_B)),
         {"b1": BLOCKED}, blocked=True),
    Case("block without consent still says blocked information exists", (relation(), block(CG_B)),
         {"b1": BLOCKED}, blocked=True),
    Case("revoked block no longer hides", (*RC, block(CG_B), revoke("block", Kind.BLOCK)), {"b1": CONSENT}),
    Case("block that ran out no longer hides", (*RC, block(CG_B, days=1), advance(days=2)), {"b1": CONSENT}),
    # The engagement's producer may serve other units: the record policy withholds UB1's records.
    Case("unit block with the engagement's unit unknown is left to the records", (*RC, block(CG_B, UB1)),
         {"b_unknown_unit": CONSENT}, closed_units=(UB1,)),
    Case("lift scoped to the reader opens the block", (*RC, block(CG_B), lift(user=ANNA.user)),
         {"b1": CONSENT, "b2": CONSENT}),
    Case("lift scoped to another reader does not help", (*RC, block(CG_B), lift(user=BO.user)),
         {"b1": BLOCKED}, blocked=True),
    Case("lift scoped to the reader's unit opens the block", (*RC, block(CG_B), lift(unit=UA1)),
         {"b1": CONSENT}, reader=BO),
    Case("lift scoped to another unit does not help", (*RC, block(CG_B), lift(unit=UA2)),
         {"b1": BLOCKED}, blocked=True),
    Case("lift opens only its own block", (*RC, block(CG_B, UB1, name="b1"), block(CG_B, UB2, name="b2"),
         lift("b1", user=ANNA.user)), {"b1": CONSENT, "b2": BLOCKED}, blocked=True,
         closed_units=(UB2,)),
    Case("lift after its end time", (*RC, block(CG_B), lift(user=ANNA.user, hours=1), advance(hours=2)),
         {"b1": BLOCKED}, blocked=True),
    Case("revoked lift", (*RC, block(CG_B), lift(user=ANNA.user), revoke("lift", Kind.LIFT)),
         {"b1": BLOCKED}, blocked=True),
    Case("lift without the patient's consent is refused",
         (*RC, block(CG_B),
          lift(user=ANNA.user, patient_consent=False, rejected="lift.consent_required")),
         {"b1": BLOCKED}, blocked=True),
    Case("lift does not replace consent", (relation(), block(CG_B), lift(user=ANNA.user)),
         {"b1": NO_CONSENT}),
    # --- internal blocks within one care giver ------------------------------------------------
    Case("internal block hides a unit from the rest of its care giver", (relation(), block(CG_A, UA2)),
         {"own_a1": OWN, "own_a2": BLOCKED}, blocked=True),
    Case("internal block does not hide the unit from itself", (relation(UA2), block(CG_A, UA2)),
         {"own_a2": OWN}, reader=CECILIA),
    Case("care-giver block does not apply inside that care giver", (relation(), block(CG_A)),
         {"own_a1": OWN, "own_a2": OWN}),
    Case("care-giver block hides it from other care givers", (relation(UB1), consent(UB1), block(CG_A)),
         {"own_a1": BLOCKED, "b1": OWN}, reader=ERIK, blocked=True),
    Case("internal block lifted for the reader", (relation(), block(CG_A, UA2), lift(user=ANNA.user)),
         {"own_a2": OWN}),
    # --- emergency access ---------------------------------------------------------------------
    Case("emergency access without consent", (relation(), emergency()), {"b1": EMERGENCY}),
    Case("emergency without a reason is refused",
         (relation(), emergency(reason="  ", rejected="emergency.reason_required")), {"b1": NO_CONSENT}),
    Case("emergency opens a block", (*RC, block(CG_B), emergency()), {"b1": EMERGENCY}),
    Case("emergency opens an internal block", (block(CG_A, UA2), emergency()), {"own_a2": EMERGENCY},
         closed_units=()),
    Case("a colleague's emergency does not help", (relation(), emergency(BO)), {"b1": NO_CONSENT}),
    Case("emergency after its window", (relation(), emergency(), advance(hours=5)), {"b1": NO_CONSENT}),
    Case("emergency still needs a patient relation", (emergency(),), {"b1": NO_RELATION}),
    # --- protected identity, social services, request checks -----------------------------------
    Case("protected identity is always flagged", (relation(), protect()), {"own_a1": OWN},
         protected=True),
    Case("protected identity is flagged on emergency access too", (relation(), emergency(), protect()),
         {"b1": EMERGENCY}, protected=True),
    Case("protected identity flagged even when everything is denied", (protect(),), {"b1": NO_RELATION},
         protected=True),
    Case("revoked protected-identity mark",
         (relation(), protect(), revoke("protected", Kind.PROTECTED_IDENTITY)), {"own_a1": OWN}),
    Case("social services never readable, consent or not", (relation(), consent(), emergency()),
         {"soc": SOCIAL, "b1": CONSENT}),
    Case("social services not readable by its own care giver", (relation(UM1),), {"soc": SOCIAL},
         reader=MAJA),
    Case("engagement without a data controller is withheld", RC,
         {"no_controller": "engagement_incomplete"}),
    Case("purpose other than care denies everything", RC,
         {"own_a1": "purpose_not_care", "b1": "purpose_not_care"}, reader=ANNA_ADMIN,
         reason="purpose_not_care"),
    Case("unknown category denies everything", RC, {"own_a1": "unknown_category"},
         categories=("diagnoses", "horoscope"), reason="unknown_category"),
    Case("no category asked denies everything", RC, {"own_a1": "no_categories"}, categories=()),
]


@pytest.fixture(scope="module")
async def store(database_url: str) -> AsyncIterator[PostgresConsentStore]:
    store = await open_store(database_url, "consent_scenarios", max_size=4)
    yield store
    await store.close()


def test_the_suite_has_at_least_thirty_distinct_scenarios() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_pdl_scenario(case: Case, store: PostgresConsentStore) -> None:
    clock = Clock()
    ctx = Ctx(ConsentService(store, clock=clock), clock, new_patient())
    for step in case.steps:
        await step(ctx)

    engagements = [ENGAGEMENTS[name] for name in case.expect]
    decision = await ctx.service.decide(case.reader, ctx.patient, case.categories, engagements)

    got = {e.id: (e.basis.value if e.allowed else str(e.reason)) for e in decision.engagements}
    assert got == case.expect
    assert decision.blocked_information_exists is case.blocked
    assert decision.protected_identity is case.protected
    assert bool(decision.protected_fields) is case.protected
    allowed = [e for e in decision.engagements if e.allowed]
    expected_outcome = (
        Outcome.ALLOWED if len(allowed) == len(engagements) else Outcome.DENIED if not allowed
        else Outcome.PARTIAL
    )
    assert decision.outcome is expected_outcome
    if case.reason is not None:
        assert str(decision.reason) == case.reason
    if case.closed_units is not None:
        assert sorted(decision.record_policy.closed_care_units) == list(case.closed_units)
