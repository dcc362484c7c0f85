"""Sample-check rules (PDL follow-up): which records are flagged for review, and why. No I/O.

The audit service owns the compliance follow-ups (design.md §3: it follows up the access log):
emergency access and protected identity are flagged here, with the other per-record rules, and
the windowed rules (many patients in an hour, repeated refused attempts) count over a sliding
hour, so attempts straddling a clock hour count together. A patient relation is in force by
``Relation.in_force``, the one place this service judges it; the stores only fetch relations.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from npo_platform.contracts import ConsentEvent
from npo_platform.contracts.events_pb2 import AccessBasis, AccessOutcome, ActivityType

from .domain import Entry, Kind

# Plain ints: looking enum values up on the protobuf wrapper costs more than the rule itself.
_EMERGENCY, _PATIENT_SELF = int(AccessBasis.EMERGENCY), int(AccessBasis.PATIENT_SELF)
_DENIED = int(AccessOutcome.DENIED)
_EMERGENCY_OPEN = int(ActivityType.EMERGENCY_OPEN)


class Rule(StrEnum):
    EMERGENCY = "emergency"
    NO_RELATION = "no_active_relation"
    KINSHIP = "shared_surname_or_address"
    OUT_OF_HOURS = "out_of_hours"
    PROTECTED_IDENTITY = "protected_identity"
    MANY_PATIENTS = "many_patients_per_hour"
    REPEATED_REFUSALS = "repeated_refused_attempts"


REFUSED_ATTEMPTS_PER_HOUR = 3  # the third refused command of one user within an hour is flagged
REFUSED = int(ConsentEvent.REFUSED)  # a consent record's outcome column holds the change
WINDOW = timedelta(hours=1)  # the windowed rules' sliding hour: (t - WINDOW, t]


@dataclass(frozen=True)
class RuleSettings:
    """Thresholds of the rules; office hours are local Swedish time, Monday to Friday."""

    office_start: time = time(7, 0)
    office_end: time = time(18, 0)
    timezone: str = "Europe/Stockholm"
    patients_per_hour: int = 40
    refused_attempts_per_hour: int = REFUSED_ATTEMPTS_PER_HOUR


@dataclass(frozen=True, slots=True)
class Person:
    """A register entry: surname (normalised) and a keyed digest of the address ('' unknown)."""

    surname: str
    address_digest: str = ""


@dataclass(frozen=True, slots=True)
class Relation:
    """A patient relation as consent events told it: registered for a unit with a validity, and
    the time its revocation or expiry was logged (None: not ended)."""

    patient_id: str
    care_unit: str
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    ended_at: datetime | None = None

    def in_force(self, at: datetime) -> bool:
        """Registered, begun, not run out and not ended at ``at``."""
        return ((self.valid_from is None or self.valid_from <= at)
                and (self.valid_to is None or at < self.valid_to)
                and (self.ended_at is None or at < self.ended_at))


Relations = Mapping[tuple[str, str], Sequence[Relation]]  # by (patient, care unit)


@dataclass(frozen=True, slots=True)
class Context:
    """What the store knows around one access record when the rules run."""

    protected_identity: bool = False
    has_active_relation: bool = True
    reader: Person | None = None
    patient: Person | None = None


@dataclass(frozen=True, slots=True)
class Flag:
    rule: Rule
    event_id: str
    detail: str


@dataclass
class RuleBook:
    settings: RuleSettings = field(default_factory=RuleSettings)

    def __post_init__(self) -> None:
        self._zone = ZoneInfo(self.settings.timezone)

    def evaluate(self, entry: Entry, context: Context) -> list[Flag]:
        """Every rule that fires for an access record (none for other kinds)."""
        if entry.kind is not Kind.ACCESS:
            return []
        checks = [
            (Rule.EMERGENCY, self._emergency(entry)),
            (Rule.PROTECTED_IDENTITY, "protected identity" if context.protected_identity else ""),
            (Rule.NO_RELATION, self._no_relation(entry, context)),
            (Rule.KINSHIP, _kinship(context)),
            (Rule.OUT_OF_HOURS, self._out_of_hours(entry.event_time)),
        ]
        return [Flag(rule, entry.event_id, detail) for rule, detail in checks if detail]

    def flags(self, entries: Sequence[Entry], relations: Relations,
              register: Mapping[str, Person]) -> list[Flag]:
        """Every per-record flag of a batch's access records, given what the store knows."""
        access = [e for e in entries if e.kind is Kind.ACCESS]
        contexts = build_contexts(access, relations, register)
        return [f for e, c in zip(access, contexts, strict=True) for f in self.evaluate(e, c)]

    @staticmethod
    def _emergency(entry: Entry) -> str:
        emergency = entry.basis == _EMERGENCY or entry.activity == _EMERGENCY_OPEN
        return "emergency access" if emergency else ""

    @staticmethod
    def _no_relation(entry: Entry, context: Context) -> str:
        if entry.basis in (_PATIENT_SELF, _EMERGENCY):
            return ""  # the patient themself; emergency access is flagged by its own rule
        if entry.outcome == _DENIED or context.has_active_relation:
            return ""
        return "no active patient relation with the reader's care unit"

    def _out_of_hours(self, moment: datetime) -> str:
        local = moment.astimezone(self._zone)
        weekday = local.weekday() < 5
        if weekday and self.settings.office_start <= local.time() < self.settings.office_end:
            return ""
        return f"access at {local:%a %H:%M} local time"


def _kinship(context: Context) -> str:
    reader, patient = context.reader, context.patient
    if reader is None or patient is None:
        return ""
    reasons = []
    if reader.surname and reader.surname == patient.surname:
        reasons.append("surname")
    if reader.address_digest and reader.address_digest == patient.address_digest:
        reasons.append("address")
    return "reader shares " + " and ".join(reasons) + " with the patient" if reasons else ""


def surname_of(full_name: str) -> str:
    """The last word of a name, normalised (case-folded) for comparison."""
    parts = full_name.split()
    return parts[-1].casefold() if parts else ""


def needs_relation(entry: Entry) -> bool:
    """Whether the no-relation rule looks at this record (so the store looks the relation up)."""
    return (
        entry.kind is Kind.ACCESS
        and entry.basis not in (_PATIENT_SELF, _EMERGENCY)
        and entry.outcome != _DENIED
    )


def relation_keys(entries: Iterable[Entry]) -> set[tuple[str, str]]:
    """The (patient, care unit) pairs whose relations the no-relation rule needs for ``entries``."""
    return {(e.patient_id, e.care_unit) for e in entries if needs_relation(e)}


def build_contexts(
    entries: list[Entry], relations: Relations, register: Mapping[str, Person]
) -> list[Context]:
    """One context per entry, in order."""
    contexts = []
    for entry in entries:
        patient = register.get(entry.patient_id)
        reader = None
        if patient is not None:  # without the patient's register entry kinship cannot be judged
            reader = register.get(entry.user_hsa_id)
            if reader is None and entry.reader_name:
                reader = Person(surname_of(entry.reader_name))
        related = not needs_relation(entry) or any(
            r.in_force(entry.event_time) for r in relations.get((entry.patient_id, entry.care_unit), ()))
        contexts.append(Context(entry.protected_identity, related, reader, patient))
    return contexts


Flagged = Mapping[str, Sequence[datetime]]  # per user: the event times of their flags of one rule


def patient_limit_crossings(accesses: Iterable[Entry], limit: int,
                            flagged: Flagged | None = None) -> list[Flag]:
    """Per reader, the access that brings the (limit+1)-th distinct patient into a sliding hour.

    Evaluated by a periodic sweep rather than per batch: one reader's accesses are spread over
    every partition (the topic is keyed by patient), so only the whole log can count them.
    ``flagged`` holds the rule's flags raised before: none is raised within an hour of another,
    so a sweep that reads the same records again (or a record that came late) adds none twice.
    """
    found = []
    for user, entries in _per_user(e for e in accesses if e.kind is Kind.ACCESS).items():
        window: deque[Entry] = deque()
        patients: Counter[str] = Counter()
        times = list((flagged or {}).get(user, ()))
        for entry in entries:
            for gone in _slide(window, entry.event_time):
                patients[gone.patient_id] -= 1
                if not patients[gone.patient_id]:
                    del patients[gone.patient_id]
            window.append(entry)
            patients[entry.patient_id] += 1
            distinct = len(patients)
            new_patient = patients[entry.patient_id] == 1
            if new_patient and distinct > limit and _quiet(times, entry.event_time):
                times.append(entry.event_time)
                detail = f"{distinct} distinct patients within the hour (limit {limit})"
                found.append(Flag(Rule.MANY_PATIENTS, entry.event_id, detail))
    return found


def refusal_crossings(entries: Iterable[Entry], limit: int, flagged: Flagged | None = None) -> list[Flag]:
    """Per user, the ``limit``-th refused command (a consent record REFUSED) within a sliding
    hour: someone trying again what the rules refuse. A periodic sweep, like the patients rule:
    one user's attempts are spread over every partition (the topic is keyed by patient)."""
    refused = (e for e in entries if e.kind is Kind.CONSENT and e.outcome == REFUSED)
    found = []
    for user, tried in _per_user(refused).items():
        window: deque[Entry] = deque()
        times = list((flagged or {}).get(user, ()))
        for entry in tried:
            _slide(window, entry.event_time)
            window.append(entry)
            if len(window) >= limit and _quiet(times, entry.event_time):
                times.append(entry.event_time)
                detail = f"{len(window)} refused attempts within the hour (limit {limit})"
                found.append(Flag(Rule.REPEATED_REFUSALS, entry.event_id, detail))
    return found


def _per_user(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """Each user's entries in (event time, event id) order: the same order however they came."""
    users: dict[str, list[Entry]] = {}
    for entry in sorted(entries, key=lambda e: (e.event_time, e.event_id)):
        users.setdefault(entry.user_hsa_id, []).append(entry)
    return users


def _slide(window: deque[Entry], now: datetime) -> list[Entry]:
    """Drop from the window what is an hour or more older than ``now``; returns what left."""
    gone = []
    while window and window[0].event_time <= now - WINDOW:
        gone.append(window.popleft())
    return gone


def _quiet(flagged: Sequence[datetime], now: datetime) -> bool:
    """No flag of the rule for the user within an hour of ``now``, before or after."""
    return all(abs(now - at) >= WINDOW for at in flagged)
