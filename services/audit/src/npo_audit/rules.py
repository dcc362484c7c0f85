"""Sample-check rules (PDL follow-up): which access records are flagged for review, and why."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo

from npo_platform.contracts import ConsentEvent
from npo_platform.contracts.events_pb2 import AccessBasis, AccessOutcome

from .domain import Entry, Kind

# Plain ints: looking enum values up on the protobuf wrapper costs more than the rule itself.
_EMERGENCY, _PATIENT_SELF = int(AccessBasis.EMERGENCY), int(AccessBasis.PATIENT_SELF)
_DENIED = int(AccessOutcome.DENIED)
_EMERGENCY_OPEN = 7  # ActivityType.EMERGENCY_OPEN


class Rule(StrEnum):
    EMERGENCY = "emergency"
    NO_RELATION = "no_active_relation"
    KINSHIP = "shared_surname_or_address"
    OUT_OF_HOURS = "out_of_hours"
    PROTECTED_IDENTITY = "protected_identity"
    MANY_PATIENTS = "many_patients_per_hour"
    REPEATED_REFUSALS = "repeated_refused_attempts"


REFUSED_ATTEMPTS_PER_HOUR = 3  # the third refused command of one user in a clock hour is flagged
_REFUSED = int(ConsentEvent.REFUSED)  # a consent record's outcome column holds the change


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


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def needs_relation(entry: Entry) -> bool:
    """Whether the no-relation rule looks at this record (so the store looks the relation up)."""
    return (
        entry.kind is Kind.ACCESS
        and entry.basis not in (_PATIENT_SELF, _EMERGENCY)
        and entry.outcome != _DENIED
    )


def build_contexts(
    entries: list[Entry], with_relation: set[int], register: dict[str, Person]
) -> list[Context]:
    """One context per entry, in order."""
    contexts = []
    for index, entry in enumerate(entries):
        patient = register.get(entry.patient_id)
        reader = None
        if patient is not None:  # without the patient's register entry kinship cannot be judged
            reader = register.get(entry.user_hsa_id)
            if reader is None and entry.reader_name:
                reader = Person(surname_of(entry.reader_name))
        related = index in with_relation or not needs_relation(entry)
        contexts.append(Context(entry.protected_identity, related, reader, patient))
    return contexts


def patient_limit_crossings(accesses: Iterable[Entry], limit: int) -> list[Flag]:
    """Per reader and clock hour, the access that brought in the (limit+1)-th distinct patient.

    Evaluated by a periodic sweep rather than per batch: one reader's accesses are spread over
    every partition (the topic is keyed by patient), so only the whole log can count them.
    """
    firsts: dict[tuple[str, datetime], dict[str, Entry]] = {}
    for entry in sorted(accesses, key=lambda e: (e.event_time, e.event_id)):
        if entry.kind is Kind.ACCESS:
            seen = firsts.setdefault((entry.user_hsa_id, hour_of(entry.event_time)), {})
            seen.setdefault(entry.patient_id, entry)
    flags = []
    for patients in firsts.values():
        if len(patients) > limit:
            crossing = list(patients.values())[limit]
            detail = f"{len(patients)} distinct patients within the hour (limit {limit})"
            flags.append(Flag(Rule.MANY_PATIENTS, crossing.event_id, detail))
    return flags


def refusal_crossings(entries: Iterable[Entry], limit: int) -> list[Flag]:
    """Per user and clock hour, the ``limit``-th refused command (a consent record REFUSED):
    someone trying again what the rules refuse. A periodic sweep, like the patients rule: one
    user's attempts are spread over every partition (the topic is keyed by patient)."""
    attempts: dict[tuple[str, datetime], list[Entry]] = {}
    for entry in sorted(entries, key=lambda e: (e.event_time, e.event_id)):
        if entry.kind is Kind.CONSENT and entry.outcome == _REFUSED:
            attempts.setdefault((entry.user_hsa_id, hour_of(entry.event_time)), []).append(entry)
    return [Flag(Rule.REPEATED_REFUSALS, tried[limit - 1].event_id,
                 f"{len(tried)} refused attempts within the hour (limit {limit})")
            for tried in attempts.values() if len(tried) >= limit]
