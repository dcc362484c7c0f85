"""PDL access rules (design.md §5.5) as pure functions over a patient's recorded state; no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

PURPOSE_CARE = "care"  # vård och behandling; the only purpose the overview serves
PROTECTED_FIELDS = ("address", "phone", "relatives", "location")


class Kind(StrEnum):
    """What a recorded fact is; each kind has its own scope fields (see Record)."""

    RELATION = "relation"
    CONSENT = "consent"
    BLOCK = "block"
    LIFT = "lift"
    EMERGENCY = "emergency"
    PROTECTED_IDENTITY = "protected_identity"


class Basis(StrEnum):
    NONE = "none"
    OWN_CARE_GIVER = "own_care_giver"
    CONSENT = "consent"
    EMERGENCY = "emergency"


class Reason(StrEnum):
    """Stable reason codes of a withheld engagement or a denied decision."""

    READER_INCOMPLETE = "reader_incomplete"
    PURPOSE_NOT_CARE = "purpose_not_care"
    NO_CATEGORIES = "no_categories"
    UNKNOWN_CATEGORY = "unknown_category"
    ENGAGEMENT_INCOMPLETE = "engagement_incomplete"
    SOCIAL_SERVICES = "social_services"
    BLOCKED = "blocked"
    NO_RELATION = "no_relation"
    NO_CONSENT = "no_consent"
    DECISION_ERROR = "decision_error"


class Outcome(StrEnum):
    ALLOWED = "allowed"
    PARTIAL = "partial"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Record:
    """One fact about a patient, kept for ever: revocation and expiry only close its window.

    Scope fields by kind: RELATION care_unit; CONSENT care_unit or (exceptionally) user;
    BLOCK care_giver and optionally care_unit (a unit-level block); LIFT block_id and
    user or care_unit (the reader or the unit it opens for); EMERGENCY user and care_unit
    of the reader; PROTECTED_IDENTITY none.
    """

    id: str
    kind: Kind
    patient_id: str
    valid_from: datetime
    registered_at: datetime
    registered_by: str
    valid_to: datetime | None = None
    revoked_at: datetime | None = None
    care_giver: str | None = None
    care_unit: str | None = None
    user: str | None = None
    block_id: str | None = None
    reason: str = ""

    def in_force(self, at: datetime) -> bool:
        """Known, started, not ended and not revoked at ``at`` (what the decision saw then)."""
        return (
            self.registered_at <= at
            and self.valid_from <= at
            and (self.valid_to is None or at < self.valid_to)
            and (self.revoked_at is None or at < self.revoked_at)
        )


@dataclass(frozen=True, slots=True)
class Reader:
    """The reader's signed claims."""

    user: str
    care_unit: str
    care_giver: str
    purpose: str


@dataclass(frozen=True, slots=True)
class EngagementRef:
    """Where information found in the index is: its data controller (care giver) and unit."""

    id: str
    data_controller: str
    care_unit: str = ""
    logical_address: str = ""
    social_services: bool = False

    def held_by_unit(self, unit: str) -> bool:
        return unit in (self.care_unit, self.logical_address)


@dataclass(frozen=True, slots=True)
class EngagementDecision:
    id: str
    allowed: bool
    basis: Basis
    reason: Reason | None = None


@dataclass(frozen=True, slots=True)
class RecordPolicy:
    """What is open to this reader record by record: the rules of §5.5 the query service applies
    to each record a producer returns (a producer's logical address often serves many units, so
    the decision per engagement cannot settle them all).

    A record of ``own_care_giver`` is withheld with ``own_closed`` unless that is None, a record
    of any other care giver with ``others_closed`` (inner secrecy: a relation, or emergency
    access, for every read; for other care givers also consent or emergency access). Blocks not
    opened for this reader close ``closed_care_givers`` (care-giver level) and
    ``closed_care_units`` (unit level, internal blocks included); a record without a care unit of
    a care giver in ``unit_blocked_care_givers`` cannot be told apart from the blocked unit's
    and is withheld too (fail closed).
    """

    own_care_giver: str = ""
    own_closed: Reason | None = Reason.DECISION_ERROR
    others_closed: Reason | None = Reason.DECISION_ERROR
    closed_care_givers: frozenset[str] = frozenset()
    closed_care_units: frozenset[str] = frozenset()
    unit_blocked_care_givers: frozenset[str] = frozenset()


CLOSED_POLICY = RecordPolicy()  # every record withheld: what a denied decision carries


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    engagements: tuple[EngagementDecision, ...]
    reason: Reason | None = None
    blocked_information_exists: bool = False
    protected_identity: bool = False
    protected_fields: tuple[str, ...] = ()
    basis: Basis = Basis.NONE
    # The reason registered with the emergency access the decision relies on (for the access
    # event and its follow-up); empty unless some engagement is allowed by emergency.
    emergency_reason: str = ""
    record_policy: RecordPolicy = CLOSED_POLICY

    def allowed_ids(self) -> set[str]:
        return {e.id for e in self.engagements if e.allowed}


@dataclass(frozen=True)
class PatientState:
    """Every record of one patient, with the views the rules need as of a time."""

    records: tuple[Record, ...] = ()
    _by_kind: dict[Kind, tuple[Record, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        grouped: dict[Kind, list[Record]] = {}
        for record in self.records:
            grouped.setdefault(record.kind, []).append(record)
        object.__setattr__(self, "_by_kind", {k: tuple(v) for k, v in grouped.items()})

    def in_force(self, kind: Kind, at: datetime) -> list[Record]:
        return [r for r in self._by_kind.get(kind, ()) if r.in_force(at)]


# Withheld reasons in the order they are reported for a whole denied decision.
_PRIORITY = (
    Reason.SOCIAL_SERVICES,
    Reason.ENGAGEMENT_INCOMPLETE,
    Reason.BLOCKED,
    Reason.NO_RELATION,
    Reason.NO_CONSENT,
)

# The decision's overall basis: the one needing the most follow-up among the allowed ones.
_BASIS_PRIORITY = (Basis.EMERGENCY, Basis.CONSENT, Basis.OWN_CARE_GIVER)


@dataclass(frozen=True, slots=True)
class _View:
    """The records in force for this reader at the decision's time."""

    reader: Reader
    relation: bool
    consent: bool
    emergency: bool
    emergency_reason: str
    blocks: tuple[Record, ...]
    lifted_block_ids: frozenset[str]


def decide(
    reader: Reader,
    state: PatientState,
    categories: Sequence[str],
    engagements: Sequence[EngagementRef],
    at: datetime,
    known_categories: frozenset[str] | None = None,
) -> Decision:
    """The access decision as of ``at``; any unexpected error denies everything (fails closed)."""
    try:
        return _decide(reader, state, categories, engagements, at, known_categories)
    except Exception:  # fail closed: a bug in the rules must never release information
        return deny_all(engagements, Reason.DECISION_ERROR)


def deny_all(engagements: Sequence[EngagementRef], reason: Reason, protected: bool = False) -> Decision:
    withheld = tuple(EngagementDecision(e.id, False, Basis.NONE, reason) for e in engagements)
    fields = PROTECTED_FIELDS if protected else ()
    return Decision(Outcome.DENIED, withheld, reason, False, protected, fields)


def _decide(
    reader: Reader,
    state: PatientState,
    categories: Sequence[str],
    engagements: Sequence[EngagementRef],
    at: datetime,
    known_categories: frozenset[str] | None,
) -> Decision:
    protected = bool(state.in_force(Kind.PROTECTED_IDENTITY, at))
    refused = _refuse_request(reader, categories, known_categories)
    if refused is not None:
        return deny_all(engagements, refused, protected)
    view = _view(reader, state, at)
    if not (view.relation or view.emergency):  # inner secrecy, own care giver included
        return deny_all(engagements, Reason.NO_RELATION, protected)
    decided = [_decide_one(view, engagement) for engagement in engagements]
    decision = _summarise([d for d, _ in decided], any(b for _, b in decided), protected)
    decision = replace(decision, record_policy=_record_policy(view))
    if any(d.basis is Basis.EMERGENCY for d, _ in decided):
        decision = replace(decision, emergency_reason=view.emergency_reason)
    return decision


def _refuse_request(
    reader: Reader, categories: Sequence[str], known: frozenset[str] | None
) -> Reason | None:
    if not all((reader.user, reader.care_unit, reader.care_giver, reader.purpose)):
        return Reason.READER_INCOMPLETE
    if reader.purpose != PURPOSE_CARE:
        return Reason.PURPOSE_NOT_CARE
    if not categories:
        return Reason.NO_CATEGORIES
    if known is not None and not known.issuperset(categories):
        return Reason.UNKNOWN_CATEGORY
    return None


def _view(reader: Reader, state: PatientState, at: datetime) -> _View:
    lifts = state.in_force(Kind.LIFT, at)
    emergencies = [e for e in state.in_force(Kind.EMERGENCY, at)
                   if e.user == reader.user and e.care_unit == reader.care_unit]
    return _View(
        reader=reader,
        relation=any(r.care_unit == reader.care_unit for r in state.in_force(Kind.RELATION, at)),
        consent=any(covers(c, reader) for c in state.in_force(Kind.CONSENT, at)),
        emergency=bool(emergencies),
        emergency_reason=emergencies[0].reason if emergencies else "",
        blocks=tuple(state.in_force(Kind.BLOCK, at)),
        lifted_block_ids=frozenset(
            lift.block_id or "" for lift in lifts if covers(lift, reader)
        ),
    )


def covers(scoped: Record, reader: Reader) -> bool:
    """A consent or lift scoped to a named user covers that user only (at the unit that
    registered it, when it names one); else the unit."""
    if scoped.user:
        return scoped.user == reader.user and scoped.care_unit in (None, reader.care_unit)
    return scoped.care_unit == reader.care_unit


def _decide_one(view: _View, engagement: EngagementRef) -> tuple[EngagementDecision, bool]:
    """The decision for one engagement and whether an unopened block withholds it."""
    if engagement.social_services:
        return _withhold(engagement, Reason.SOCIAL_SERVICES), False
    if not engagement.data_controller:
        return _withhold(engagement, Reason.ENGAGEMENT_INCOMPLETE), False
    closed, opened_by_emergency = _blocks(view, engagement)
    if closed:
        return _withhold(engagement, Reason.BLOCKED), True
    basis = _basis(view, engagement)
    if isinstance(basis, Reason):
        return _withhold(engagement, basis), False
    if opened_by_emergency or _unit_blocks_opened_by_emergency(view, engagement):
        basis = Basis.EMERGENCY
    return EngagementDecision(engagement.id, True, basis), False


def _basis(view: _View, engagement: EngagementRef) -> Basis | Reason:
    if engagement.data_controller == view.reader.care_giver:
        # Inner secrecy: a relation, or else the emergency access that let the read through.
        return Basis.OWN_CARE_GIVER if view.relation else Basis.EMERGENCY
    return _others_basis(view)


def _others_basis(view: _View) -> Basis | Reason:
    """Another care giver's information: a relation, then consent or emergency access."""
    if not view.relation:
        return Reason.NO_RELATION
    if view.consent:
        return Basis.CONSENT
    if view.emergency:
        return Basis.EMERGENCY
    return Reason.NO_CONSENT


def _record_policy(view: _View) -> RecordPolicy:
    """The decision's rules per record (inner secrecy holds here: a relation or emergency)."""
    closed = [b for b in view.blocks if b.id not in view.lifted_block_ids and not view.emergency]
    units = [b for b in closed if b.care_unit and b.care_unit != view.reader.care_unit]
    others = _others_basis(view)
    return RecordPolicy(
        own_care_giver=view.reader.care_giver,
        own_closed=None,
        others_closed=others if isinstance(others, Reason) else None,
        closed_care_givers=frozenset(
            b.care_giver or "" for b in closed
            if not b.care_unit and b.care_giver != view.reader.care_giver
        ),
        closed_care_units=frozenset(b.care_unit or "" for b in units),
        unit_blocked_care_givers=frozenset(b.care_giver or "" for b in units),
    )


def _blocks(view: _View, engagement: EngagementRef) -> tuple[bool, bool]:
    """(a block still withholds it, a block was opened by emergency access)."""
    applicable = [b for b in view.blocks if _block_applies(b, view.reader, engagement)]
    unlifted = [b for b in applicable if b.id not in view.lifted_block_ids]
    if not unlifted:
        return False, False
    if view.emergency:
        return False, True
    return True, False


def _unit_blocks_opened_by_emergency(view: _View, engagement: EngagementRef) -> bool:
    """Whether emergency access opens a unit-level block among the records of an engagement
    whose unit is not known (the record policy would otherwise withhold that unit's records)."""
    return view.emergency and not engagement.care_unit and any(
        b.care_unit and b.care_giver == engagement.data_controller
        and b.care_unit != view.reader.care_unit and b.id not in view.lifted_block_ids
        for b in view.blocks
    )


def _block_applies(block: Record, reader: Reader, engagement: EngagementRef) -> bool:
    """A block hides the blocked giver's (or unit's) information from everyone outside it.

    A unit-level block also applies inside its own care giver (an internal block). It withholds
    a whole engagement only when the engagement is that unit's (its unit or logical address);
    otherwise the engagement's producer may serve other units too, and the record policy
    withholds the blocked unit's records and every record whose unit cannot be told.
    """
    if engagement.data_controller != block.care_giver:
        return False
    if not block.care_unit:
        return reader.care_giver != block.care_giver
    return engagement.held_by_unit(block.care_unit) and reader.care_unit != block.care_unit


def _withhold(engagement: EngagementRef, reason: Reason) -> EngagementDecision:
    return EngagementDecision(engagement.id, False, Basis.NONE, reason)


def _summarise(decided: list[EngagementDecision], blocked: bool, protected: bool) -> Decision:
    allowed = [d for d in decided if d.allowed]
    withheld = [d for d in decided if not d.allowed]
    outcome = Outcome.ALLOWED if not withheld else Outcome.PARTIAL if allowed else Outcome.DENIED
    reason = _first_reason(withheld)
    bases = {d.basis for d in allowed}
    basis = next((b for b in _BASIS_PRIORITY if b in bases), Basis.NONE)
    fields = PROTECTED_FIELDS if protected else ()
    return Decision(outcome, tuple(decided), reason, blocked, protected, fields, basis)


def _first_reason(withheld: list[EngagementDecision]) -> Reason | None:
    reasons = {d.reason for d in withheld}
    return next((r for r in _PRIORITY if r in reasons), None)


# The reader's standing with a patient (the clinician's web view shows it before it asks for an
# overview, so the reader knows what to register): only the reader's own records; blocks are
# never listed (the overview says *that* blocked information exists, never where).
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
