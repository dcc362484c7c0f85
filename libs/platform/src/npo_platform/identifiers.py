"""Swedish identifiers: personal identity numbers (personnummer, samordningsnummer) and HSA-ids.

A ``PatientId`` is strict: 12 ASCII digits ``YYYYMMDDNNNC`` with the century, a real calendar
date (a samordningsnummer adds 60 to the day), and a Luhn check digit over the last ten digits.
Its ``repr`` and ``str`` are masked so that an accidental log line cannot carry the number; use
``.value`` on the wire and ``pseudonym(key)`` in logs, traces and metrics.

The engagement index's looser pattern (reserve numbers with a letter) is a separate, explicit
predicate, ``is_ei_patient_id``; it never yields a ``PatientId``.

An HSA-id follows Inera's HSA format: ``SE``, the catalogue owner's organisation number (ten
digits with a Luhn check digit, optionally in the twelve-digit ``16`` form), ``-`` and at least
one letter or digit (A-Z, a-z, 0-9); at most 31 characters in all.

Errors are ``ValueError`` subclasses carrying a stable ``code``; their messages never repeat
the rejected input.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

_COORDINATION_DAY_OFFSET = 60
_PNR_LENGTH = 12
_EI_PATIENT_ID = re.compile(r"[0-9]{8}[0-9pPtTfF][0-9]{3}", re.ASCII)
_HSA_ID = re.compile(r"SE(?:16)?(?P<org>[0-9]{10})-(?P<suffix>[A-Za-z0-9]+)", re.ASCII)
HSA_ID_MAX_LENGTH = 31


def luhn_check_digit(digits: str) -> int:
    """The Luhn digit that completes ``digits`` (doubling from the rightmost digit)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return (10 - total % 10) % 10


def _luhn_valid(digits: str) -> bool:
    return luhn_check_digit(digits[:-1]) == int(digits[-1])


def _is_ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


class InvalidPatientId(ValueError):
    """A rejected personal identity number; ``code`` is one of ``pnr.*``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PatientIdKind(StrEnum):
    PERSONNUMMER = "personnummer"
    SAMORDNINGSNUMMER = "samordningsnummer"


@dataclass(frozen=True, repr=False)
class PatientId:
    """A validated 12-digit personnummer or samordningsnummer."""

    value: str

    def __post_init__(self) -> None:
        _validate_patient_id(self.value)

    @classmethod
    def parse(cls, raw: str) -> PatientId:
        """Validate ``raw`` (exactly 12 digits, no separator) or raise ``InvalidPatientId``."""
        return cls(raw)

    @property
    def kind(self) -> PatientIdKind:
        if int(self.value[6:8]) > _COORDINATION_DAY_OFFSET:
            return PatientIdKind.SAMORDNINGSNUMMER
        return PatientIdKind.PERSONNUMMER

    @property
    def birth_date(self) -> date:
        day = int(self.value[6:8])
        if self.kind is PatientIdKind.SAMORDNINGSNUMMER:
            day -= _COORDINATION_DAY_OFFSET
        return date(int(self.value[0:4]), int(self.value[4:6]), day)

    def masked(self) -> str:
        """Display form without the birth number, e.g. ``19121212-****``."""
        return f"{self.value[:8]}-****"

    def pseudonym(self, key: bytes) -> str:
        """Keyed HMAC-SHA256 (hex): stable per key, usable in logs, traces and metrics."""
        if not key:
            raise ValueError("a pseudonym needs a non-empty key")
        return hmac.new(key, self.value.encode("ascii"), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"PatientId({self.masked()})"

    def __str__(self) -> str:
        return self.masked()


def _validate_patient_id(raw: object) -> None:
    if not isinstance(raw, str) or not _is_ascii_digits(raw):
        raise InvalidPatientId("pnr.format", "a personal identity number has digits only")
    if len(raw) != _PNR_LENGTH:
        raise InvalidPatientId("pnr.length", "a personal identity number has 12 digits")
    day = int(raw[6:8])
    if day > _COORDINATION_DAY_OFFSET:
        day -= _COORDINATION_DAY_OFFSET
    try:
        date(int(raw[0:4]), int(raw[4:6]), day)
    except ValueError:
        raise InvalidPatientId("pnr.date", "a personal identity number must hold a real date") from None
    if not _luhn_valid(raw[2:]):
        raise InvalidPatientId("pnr.checksum", "a personal identity number has a wrong check digit")


def make_personnummer(birth_date: date, serial: int, *, coordination: bool = False) -> str:
    """A valid 12-digit number for test data: ``birth_date``, a 3-digit ``serial``, its check digit.

    With ``coordination`` the day is raised by 60 (a samordningsnummer).
    """
    if not 0 <= serial <= 999:
        raise ValueError("serial must be between 0 and 999")
    day = birth_date.day + (_COORDINATION_DAY_OFFSET if coordination else 0)
    body = f"{birth_date.year:04d}{birth_date.month:02d}{day:02d}{serial:03d}"
    return body + str(luhn_check_digit(body[2:]))


def is_ei_patient_id(value: str) -> bool:
    """Whether ``value`` matches the engagement index's syntactic patient-id pattern.

    The pattern ``[0-9]{8}[0-9pPtTfF][0-9]{3}`` also admits reserve numbers with a letter and
    checks neither date nor check digit. Use ``PatientId.parse`` for a real identity number.
    """
    return _EI_PATIENT_ID.fullmatch(value) is not None


class InvalidHsaId(ValueError):
    """A rejected HSA-id; ``code`` is one of ``hsa.*``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class HsaId:
    """A validated HSA-id such as ``SE2321000016-1234``."""

    value: str

    def __post_init__(self) -> None:
        _validate_hsa_id(self.value)

    @classmethod
    def parse(cls, raw: str) -> HsaId:
        """Validate ``raw`` or raise ``InvalidHsaId``."""
        return cls(raw)

    @property
    def organisation_number(self) -> str:
        """The catalogue owner's 10-digit organisation number."""
        return self._match()["org"]

    @property
    def suffix(self) -> str:
        return self._match()["suffix"]

    def _match(self) -> re.Match[str]:
        match = _HSA_ID.fullmatch(self.value)
        assert match is not None  # guaranteed by __post_init__
        return match

    def __str__(self) -> str:
        return self.value


def _validate_hsa_id(raw: object) -> None:
    if not isinstance(raw, str) or not raw:
        raise InvalidHsaId("hsa.format", "an HSA-id is a non-empty string")
    if len(raw) > HSA_ID_MAX_LENGTH:
        raise InvalidHsaId("hsa.length", f"an HSA-id has at most {HSA_ID_MAX_LENGTH} characters")
    match = _HSA_ID.fullmatch(raw)
    if match is None:
        raise InvalidHsaId(
            "hsa.format", "an HSA-id is SE, a 10-digit organisation number, '-' and [A-Za-z0-9]+"
        )
    if not _luhn_valid(match["org"]):
        raise InvalidHsaId("hsa.checksum", "the organisation number has a wrong check digit")


def is_hsa_id(value: str) -> bool:
    """Whether ``value`` is a valid HSA-id."""
    try:
        _validate_hsa_id(value)
    except InvalidHsaId:
        return False
    return True
