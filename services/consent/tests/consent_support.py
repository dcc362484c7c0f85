"""Test vocabulary for npo-consent: actors, engagements, a settable clock and scenario steps."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest

from npo_consent import domain_commands as c
from npo_consent.domain import EngagementRef, Kind, Reader, Record
from npo_consent.service import ConsentService
from npo_platform.identifiers import make_personnummer
from npo_platform.identity import Principal, Role, issue_token

T0 = datetime(2026, 1, 10, 10, 0, tzinfo=UTC)

# Care giver A (a region) with units A1, A2; care giver B (another region); M, a municipality.
CG_A, UA1, UA2 = "SE2321000016-CGA1", "SE2321000016-UA11", "SE2321000016-UA12"
CG_B, UB1, UB2 = "SE2321000032-CGB1", "SE2321000032-UB11", "SE2321000032-UB12"
CG_M, UM1 = "SE2120000001-CGM1", "SE2120000001-UM11"

ANNA = Reader("SE2321000016-ANNA", UA1, CG_A, "care")
BO = Reader("SE2321000016-BOBO", UA1, CG_A, "care")  # Anna's colleague at the same unit
CECILIA = Reader("SE2321000016-CECI", UA2, CG_A, "care")  # same care giver, other unit
ERIK = Reader("SE2321000032-ERIK", UB1, CG_B, "care")  # care giver B
MAJA = Reader("SE2120000001-MAJA", UM1, CG_M, "care")  # municipality
ANNA_ADMIN = Reader(ANNA.user, UA1, CG_A, "administration")

ENGAGEMENTS = {
    "own_a1": EngagementRef("own_a1", CG_A, UA1, UA1),
    "own_a2": EngagementRef("own_a2", CG_A, UA2, UA2),
    "b1": EngagementRef("b1", CG_B, UB1, UB1),
    "b2": EngagementRef("b2", CG_B, UB2, UB2),
    "b_unknown_unit": EngagementRef("b_unknown_unit", CG_B),
    "no_controller": EngagementRef("no_controller", "", UB1, UB1),
    "soc": EngagementRef("soc", CG_M, UM1, UM1, social_services=True),
}

REGISTRAR = c.Staff("SE2321000016-ADM1", "Registrar", UA1, CG_A)
GIVER_OF_UNIT = {UA1: CG_A, UA2: CG_A, UB1: CG_B, UB2: CG_B, UM1: CG_M}
READERS = {reader.user: reader for reader in (ANNA, BO, CECILIA, ERIK, MAJA)}
_serials = itertools.count(1)


def at_unit(unit: str) -> c.Staff:
    """A clinician of ``unit`` (and of its care giver)."""
    return c.Staff(f"{unit}-REG", "Registrar", unit, GIVER_OF_UNIT[unit])


def the_patient(patient: str) -> c.Staff:
    """The patient in person, through a patient-facing channel."""
    return c.Staff("patient-self", "The Patient", None, None, patient)


def registrant(command: c.Command) -> c.Staff:
    """Who may register ``command`` (scopes.py): the unit for relations and consents, the
    patient for blocks and lifts."""
    match command:
        case c.RegisterRelation(care_unit=unit) | c.RegisterConsent(care_unit=str() as unit):
            return at_unit(unit)
        case c.RegisterConsent(user=str() as user):
            return staff(READERS[user])
        case c.RegisterBlock() | c.RegisterLift():
            return the_patient(command.patient_id)
        case _:
            return REGISTRAR


def revoker(record: Record) -> c.Staff:
    """Who may revoke ``record`` (scopes.py)."""
    if record.kind in (Kind.RELATION, Kind.CONSENT) and record.care_unit:
        return at_unit(record.care_unit)
    if record.kind in (Kind.BLOCK, Kind.LIFT):
        return the_patient(record.patient_id)
    return REGISTRAR


def new_patient() -> str:
    """A fresh valid personnummer per scenario (the suite shares one database)."""
    n = next(_serials)
    return make_personnummer(date(1950 + n // 900, 1 + (n // 28) % 12, 1 + n % 28), n % 900)


def staff(reader: Reader) -> c.Staff:
    return c.Staff(reader.user, "Reader", reader.care_unit, reader.care_giver)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Ctx:
    """One scenario's world: the service over the store, its clock, patient and named records."""

    service: ConsentService
    clock: Clock
    patient: str
    names: dict[str, str] = field(default_factory=dict)


Step = Callable[[Ctx], Awaitable[None]]


def _register(name: str, make: Callable[[Ctx], c.Command], by: Reader | None = None,
              rejected: str | None = None) -> Step:
    async def step(ctx: Ctx) -> None:
        command = make(ctx)
        who = staff(by) if by else registrant(command)
        if rejected is not None:
            with pytest.raises(c.CommandRejected) as refused:
                await ctx.service.register(command, who)
            assert refused.value.code == rejected
            return
        ctx.names[name] = (await ctx.service.register(command, who)).id

    return step


def relation(unit: str = UA1, *, days: float | None = None, name: str = "relation") -> Step:
    def make(ctx: Ctx) -> c.Command:
        end = None if days is None else ctx.clock.now + timedelta(days=days)
        return c.RegisterRelation(ctx.patient, unit, ctx.clock.now - timedelta(days=1), end)

    return _register(name, make)


def consent(unit: str | None = UA1, user: str | None = None, *, days: float = 30,
            starts_in_days: float = 0, name: str = "consent") -> Step:
    def make(ctx: Ctx) -> c.Command:
        start = ctx.clock.now + timedelta(days=starts_in_days)
        return c.RegisterConsent(ctx.patient, start + timedelta(days=days), unit if not user else None,
                                 user, start)

    return _register(name, make)


def block(care_giver: str = CG_B, unit: str | None = None, *, days: float | None = None,
          name: str = "block") -> Step:
    def make(ctx: Ctx) -> c.Command:
        end = None if days is None else ctx.clock.now + timedelta(days=days)
        return c.RegisterBlock(ctx.patient, care_giver, unit, "patient asked", None, end)

    return _register(name, make)


def lift(block_name: str = "block", *, user: str | None = None, unit: str | None = None,
         hours: float = 2, patient_consent: bool = True, rejected: str | None = None,
         name: str = "lift") -> Step:
    def make(ctx: Ctx) -> c.Command:
        return c.RegisterLift(ctx.patient, ctx.names.get(block_name, "0" * 32), "needed for care",
                              ctx.clock.now + timedelta(hours=hours), patient_consent, user, unit)

    return _register(name, make, rejected=rejected)


def emergency(reader: Reader = ANNA, reason: str = "unconscious, suspected poisoning",
              rejected: str | None = None, name: str = "emergency") -> Step:
    return _register(name, lambda ctx: c.RegisterEmergencyAccess(ctx.patient, reason), reader, rejected)


def protect(name: str = "protected") -> Step:
    return _register(name, lambda ctx: c.MarkProtectedIdentity(ctx.patient, "skyddad folkbokföring"))


def revoke(name: str, kind: Kind) -> Step:
    async def step(ctx: Ctx) -> None:
        record = await ctx.service.store.get(ctx.names[name])
        assert record is not None
        await ctx.service.revoke(kind, record.id, revoker(record))

    return step


def advance(hours: float = 0, days: float = 0) -> Step:
    async def step(ctx: Ctx) -> None:
        ctx.clock.now += timedelta(hours=hours, days=days)

    return step


def principal(reader: Reader, *roles: Role, name: str = "Test User") -> Principal:
    return Principal(sub=reader.user, name=name, roles=frozenset(roles or (Role.CLINICIAN,)),
                     care_unit=reader.care_unit, care_giver=reader.care_giver,
                     assignment="assignment-1", purpose=reader.purpose)


def bearer(private_key_pem: bytes, reader: Reader, *roles: Role) -> dict[str, str]:
    token = issue_token(private_key_pem, principal(reader, *roles), timedelta(hours=1))
    return {"Authorization": f"Bearer {token}"}
