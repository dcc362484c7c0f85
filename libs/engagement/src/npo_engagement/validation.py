"""Validation of engagement updates with stable codes in the spirit of EI000-EI006. No I/O.

A message is all or nothing (as in EI): one bad transaction rejects its whole message, which is
dead-lettered with every code found. Messages never name the rejected values (a patient id must
not reach a log line or a header), only the transaction index and the field.

Speed (the index validates every update it ingests): ``transactions_of`` first tries one pass
that checks every rule for the all-valid case and builds the result directly; at the first doubt
it returns None and ``_full_walk`` checks the rules one by one, collecting the exact violations.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache

from npo_engagement.model import (
    NOT_APPLICABLE,
    Identity,
    Transaction,
    Version,
    identity_key,
    normalise_optional,
)
from npo_platform.contracts import EngagementUpdate
from npo_platform.contracts.events_pb2 import Engagement
from npo_platform.identifiers import InvalidPatientId, PatientId

MAX_TRANSACTIONS = 1000
MAX_CLOCK_SKEW = timedelta(minutes=5)
_CONTENT_TIME = re.compile(r"[0-9]{14}", re.ASCII)


class Code(StrEnum):
    """Stable validation codes (dead-letter reason, HTTP problem ``code``)."""

    COUNT = "EI000"  # 1-1000 transactions per message
    DUPLICATE_KEY = "EI001"  # the same nine-field identity twice in one message
    MANDATORY = "EI002"  # a key field is missing or has surrounding whitespace
    LENGTH = "EI003"  # a field is longer than its limit
    TIME = "EI004"  # mostRecentContent not yyyyMMddHHmmss, or event time missing/in the future
    PATIENT = "EI005"  # not a valid personnummer/samordningsnummer
    LOOP = "EI006"  # the engagement points at the platform's own address
    PRODUCER = "EI007"  # sourceSystem differs from the producer that published the message


# Mandatory key fields and their length limits (EI's 32/255/255/64/128/128/64/64).
MANDATORY_FIELDS: dict[str, int] = {
    "registered_resident_identification": 32,
    "service_domain": 255,
    "categorization": 255,
    "logical_address": 64,
    "source_system": 64,
    "data_controller": 64,
}
OPTIONAL_FIELDS: dict[str, int] = {
    "business_object_instance_identifier": 128,
    "clinical_process_interest_id": 128,
    "owner": 64,
}


@dataclass(frozen=True, slots=True)
class Violation:
    code: Code
    transaction: int  # index in the message; -1 for the message as a whole
    detail: str

    def __str__(self) -> str:
        where = "message" if self.transaction < 0 else f"transaction {self.transaction}"
        return f"{self.code} {where}: {self.detail}"


class InvalidUpdate(ValueError):
    """The update breaks one or more rules; ``codes`` lists them, sorted and unique."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = tuple(violations)
        self.codes = tuple(sorted({v.code.value for v in violations}))
        super().__init__("; ".join(str(v) for v in self.violations[:20]))


@dataclass(frozen=True)
class Rules:
    """What the validation needs besides the message: the platform's own addresses."""

    own_addresses: frozenset[str] = frozenset()


def transactions_of(
    update: EngagementUpdate, rules: Rules, *, received_at: datetime | None = None
) -> list[Transaction]:
    """The validated transactions of ``update``, or InvalidUpdate with every violation found.

    ``received_at`` (the broker's record time, fixed in the log so replays decide the same)
    bounds how far the producer's event time may lie in the future.
    """
    fast = _all_valid_transactions(update, rules, received_at)
    if fast is not None:
        return fast
    return _full_walk(update, rules, received_at)


def _full_walk(
    update: EngagementUpdate, rules: Rules, received_at: datetime | None
) -> list[Transaction]:
    """Every rule, one at a time, collecting every violation (the reference for the fast path)."""
    violations = list(_message_violations(update, received_at))
    event_time = update.meta.event_time.ToDatetime(tzinfo=UTC)
    version_of = _versions(event_time, update.meta.event_id)
    seen: set[bytes] = set()
    valid_patients: set[str] = set()
    result: list[Transaction] = []
    for index, tx in enumerate(update.transactions):
        found = _engagement_violations(index, tx.engagement, update.producer, rules, valid_patients)
        violations.extend(found)
        if found:
            continue
        identity = identity_of(tx.engagement)
        key = identity.key
        if key in seen:
            violations.append(Violation(Code.DUPLICATE_KEY, index, "identity repeated in message"))
        seen.add(key)
        content = tx.engagement.most_recent_content
        result.append(Transaction(identity, content, tx.delete_flag, version_of(content), key))
    if violations:
        raise InvalidUpdate(violations)
    return result


def identity_of(engagement: Engagement) -> Identity:
    return Identity(
        engagement.registered_resident_identification,
        engagement.service_domain,
        engagement.categorization,
        engagement.logical_address,
        normalise_optional(engagement.business_object_instance_identifier),
        normalise_optional(engagement.clinical_process_interest_id),
        engagement.source_system,
        engagement.data_controller,
        normalise_optional(engagement.owner),
    )


def _versions(event_time: datetime, event_id: str) -> _VersionCache:
    return _VersionCache(event_time, event_id)


class _VersionCache:
    """Versions of one message differ only by content time: share the instances."""

    def __init__(self, event_time: datetime, event_id: str) -> None:
        self._event_time, self._event_id = event_time, event_id
        self._cache: dict[str, Version] = {}

    def __call__(self, content: str) -> Version:
        found = self._cache.get(content)
        if found is None:
            found = self._cache[content] = Version(self._event_time, content, self._event_id)
        return found


def _message_violations(update: EngagementUpdate, received_at: datetime | None) -> list[Violation]:
    found: list[Violation] = []
    count = len(update.transactions)
    if not 1 <= count <= MAX_TRANSACTIONS:
        found.append(Violation(Code.COUNT, -1, f"{count} transactions, allowed 1-{MAX_TRANSACTIONS}"))
    if not update.meta.HasField("event_time") or update.meta.event_time.seconds <= 0:
        found.append(Violation(Code.TIME, -1, "meta.event_time is missing"))
    elif received_at is not None:
        event_time = update.meta.event_time.ToDatetime(tzinfo=UTC)
        if event_time > received_at + MAX_CLOCK_SKEW:
            found.append(Violation(Code.TIME, -1, "meta.event_time lies in the future"))
    if not update.producer:
        found.append(Violation(Code.MANDATORY, -1, "producer is missing"))
    return found


def _engagement_violations(
    index: int, engagement: Engagement, producer: str, rules: Rules, valid_patients: set[str]
) -> list[Violation]:
    found = [*_field_violations(index, engagement)]
    if found:
        return found
    patient = engagement.registered_resident_identification
    if patient not in valid_patients:
        try:
            PatientId.parse(patient)
            valid_patients.add(patient)
        except InvalidPatientId as error:
            found.append(Violation(Code.PATIENT, index, f"patient id rejected ({error.code})"))
    content = engagement.most_recent_content
    if content and not _is_content_time(content):
        found.append(Violation(Code.TIME, index, "most_recent_content is not yyyyMMddHHmmss"))
    if rules.own_addresses & {engagement.logical_address, engagement.source_system}:
        found.append(Violation(Code.LOOP, index, "points at the platform's own address"))
    if producer and engagement.source_system != producer:
        found.append(Violation(Code.PRODUCER, index, "source_system is not the message's producer"))
    return found


_FIELDS = tuple(
    (name, limit, name in MANDATORY_FIELDS)
    for name, limit in (*MANDATORY_FIELDS.items(), *OPTIONAL_FIELDS.items())
)


def _field_violations(index: int, engagement: Engagement) -> list[Violation]:
    found: list[Violation] = []
    for name, limit, mandatory in _FIELDS:
        value: str = getattr(engagement, name)
        if not value:
            if mandatory:
                found.append(Violation(Code.MANDATORY, index, f"{name} is missing"))
        elif value[0].isspace() or value[-1].isspace():
            found.append(Violation(Code.MANDATORY, index, f"{name} has surrounding whitespace"))
        elif len(value) > limit:
            found.append(Violation(Code.LENGTH, index, f"{name} longer than {limit}"))
    return found


@lru_cache(maxsize=65_536)
def _is_content_time(value: str) -> bool:
    if not _CONTENT_TIME.fullmatch(value):
        return False
    try:
        datetime.strptime(value, "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return True


_L = MANDATORY_FIELDS | OPTIONAL_FIELDS  # the limits, read once into the fast path's constants
_PATIENT_MAX, _DOMAIN_MAX, _CATEGORIZATION_MAX = (
    _L["registered_resident_identification"], _L["service_domain"], _L["categorization"],
)
_ADDRESS_MAX, _SOURCE_MAX, _CONTROLLER_MAX = (
    _L["logical_address"], _L["source_system"], _L["data_controller"],
)
_BOI_MAX, _PROCESS_MAX, _OWNER_MAX = (
    _L["business_object_instance_identifier"], _L["clinical_process_interest_id"], _L["owner"],
)


def _all_valid_transactions(
    update: EngagementUpdate, rules: Rules, received_at: datetime | None
) -> list[Transaction] | None:
    """The common case in one pass: the transactions if every rule holds, else None.

    None sends the message through ``_full_walk``, which finds (and words) every violation; this
    pass only has to be sure when it says yes. Same rules, same result (tested table-driven).
    """
    event_time = _valid_event_time(update, received_at)
    if event_time is None:
        return None
    producer, own, event_id = update.producer, rules.own_addresses, update.meta.event_id
    versions: dict[str, Version] = {}
    patients: set[str] = set()
    seen: set[bytes] = set()
    result: list[Transaction] = []
    for tx in update.transactions:
        e = tx.engagement
        patient, domain, categorization = (
            e.registered_resident_identification, e.service_domain, e.categorization,
        )
        address, boi, process = (
            e.logical_address, e.business_object_instance_identifier, e.clinical_process_interest_id,
        )
        source, controller, owner = e.source_system, e.data_controller, e.owner
        if not (
            0 < len(patient) <= _PATIENT_MAX and 0 < len(domain) <= _DOMAIN_MAX
            and 0 < len(categorization) <= _CATEGORIZATION_MAX and 0 < len(address) <= _ADDRESS_MAX
            and 0 < len(source) <= _SOURCE_MAX and 0 < len(controller) <= _CONTROLLER_MAX
            and len(boi) <= _BOI_MAX and len(process) <= _PROCESS_MAX and len(owner) <= _OWNER_MAX
            and source == producer
        ):
            return None
        boi, process, owner = boi or NOT_APPLICABLE, process or NOT_APPLICABLE, owner or NOT_APPLICABLE
        parts = (patient, domain, categorization, address, boi, process, source, controller, owner)
        for value in parts:  # strip() returns the same string when there is nothing to strip
            if value.strip() != value:
                return None
        if own and (address in own or source in own):
            return None
        if patient not in patients:
            if not _is_patient(patient):
                return None
            patients.add(patient)
        content = e.most_recent_content
        version = versions.get(content)
        if version is None:
            if content and not _is_content_time(content):
                return None
            version = versions[content] = Version(event_time, content, event_id)
        key = identity_key(parts)
        if key in seen:
            return None
        seen.add(key)
        result.append(Transaction(Identity(*parts), content, tx.delete_flag, version, key))
    return result


def _valid_event_time(update: EngagementUpdate, received_at: datetime | None) -> datetime | None:
    """The event time when the message as a whole breaks no rule (``_message_violations``)."""
    meta = update.meta
    if not update.producer or not 1 <= len(update.transactions) <= MAX_TRANSACTIONS:
        return None
    if not meta.HasField("event_time") or meta.event_time.seconds <= 0:
        return None
    event_time = meta.event_time.ToDatetime(tzinfo=UTC)
    if received_at is not None and event_time > received_at + MAX_CLOCK_SKEW:
        return None
    return event_time


def _is_patient(value: str) -> bool:
    try:
        PatientId.parse(value)
    except InvalidPatientId:
        return False
    return True
