"""Personnummer, samordningsnummer and HSA-id validation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest

from npo_platform.identifiers import (
    HsaId,
    InvalidHsaId,
    InvalidPatientId,
    PatientId,
    PatientIdKind,
    is_ei_patient_id,
    is_hsa_id,
    luhn_check_digit,
    make_personnummer,
)

TOLVAN = "191212121212"  # Skatteverket's well-known test person
KEY = b"test-pseudonym-key"
ARABIC_INDIC_TOLVAN = "".join(chr(0x0660 + int(digit)) for digit in TOLVAN)


@pytest.mark.parametrize(
    ("raw", "kind", "birth_date"),
    [
        (TOLVAN, PatientIdKind.PERSONNUMMER, date(1912, 12, 12)),
        ("199001012393", PatientIdKind.PERSONNUMMER, date(1990, 1, 1)),
        ("200002292381", PatientIdKind.PERSONNUMMER, date(2000, 2, 29)),  # 2000 is a leap year
        ("197001612386", PatientIdKind.SAMORDNINGSNUMMER, date(1970, 1, 1)),
        ("198812912387", PatientIdKind.SAMORDNINGSNUMMER, date(1988, 12, 31)),
        ("202402892380", PatientIdKind.SAMORDNINGSNUMMER, date(2024, 2, 29)),
    ],
)
def test_valid_numbers_parse(raw: str, kind: PatientIdKind, birth_date: date) -> None:
    patient = PatientId.parse(raw)

    assert patient.value == raw
    assert patient.kind is kind
    assert patient.birth_date == birth_date


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("19121212121", "pnr.length"),  # 11 digits
        ("1912121212120", "pnr.length"),  # 13 digits
        ("1212121212", "pnr.length"),  # 10-digit form has no century
        ("", "pnr.format"),
        ("19121212-1212", "pnr.format"),
        ("1912121212 2", "pnr.format"),
        ("19121212121A", "pnr.format"),
        ("19121212T212", "pnr.format"),  # reserve number: only is_ei_patient_id accepts it
        (ARABIC_INDIC_TOLVAN, "pnr.format"),  # non-ASCII digits
        ("190002292381", "pnr.date"),  # 1900 is not a leap year
        ("202302292384", "pnr.date"),  # Feb 29 in a non-leap year
        ("199013012399", "pnr.date"),  # month 13
        ("199000012394", "pnr.date"),  # month 0
        ("199001002394", "pnr.date"),  # day 0
        ("199004312394", "pnr.date"),  # April 31
        ("199001322396", "pnr.date"),  # day 32 (neither personnummer nor samordningsnummer)
        ("199001602391", "pnr.date"),  # day 60 = samordningsnummer day 0
        ("199004912391", "pnr.date"),  # samordningsnummer for April 31
        ("190002892388", "pnr.date"),  # samordningsnummer for Feb 29 1900
        ("199001922393", "pnr.date"),  # day 92
        ("191212121213", "pnr.checksum"),
        ("197001612385", "pnr.checksum"),
    ],
)
def test_invalid_numbers_are_rejected_with_a_stable_code(raw: str, code: str) -> None:
    with pytest.raises(InvalidPatientId) as caught:
        PatientId.parse(raw)

    assert caught.value.code == code
    assert isinstance(caught.value, ValueError)
    if raw:
        assert raw not in str(caught.value)


def test_constructor_validates_like_parse() -> None:
    with pytest.raises(InvalidPatientId):
        PatientId("191212121213")


def test_patient_id_is_a_frozen_value() -> None:
    patient = PatientId.parse(TOLVAN)

    assert patient == PatientId.parse(TOLVAN)
    assert len({patient, PatientId.parse(TOLVAN)}) == 1
    with pytest.raises(AttributeError):
        patient.value = "199001012393"  # type: ignore[misc]


def test_masked_display_hides_the_birth_number() -> None:
    patient = PatientId.parse(TOLVAN)

    assert patient.masked() == "19121212-****"


@pytest.mark.parametrize("render", [str, repr, lambda p: f"{p}", lambda p: f"{p!r}"])
def test_text_forms_never_carry_the_number(render: Callable[[PatientId], str]) -> None:
    text = render(PatientId.parse(TOLVAN))

    assert TOLVAN not in text
    assert "1212121212" not in text


def test_pseudonym_is_stable_keyed_and_opaque() -> None:
    patient = PatientId.parse(TOLVAN)

    pseudonym = patient.pseudonym(KEY)

    assert pseudonym == PatientId.parse(TOLVAN).pseudonym(KEY)
    assert len(pseudonym) == 64
    assert int(pseudonym, 16) >= 0
    assert TOLVAN not in pseudonym
    assert "1212121212" not in pseudonym
    assert pseudonym != patient.pseudonym(b"another-key")
    assert pseudonym != PatientId.parse("199001012393").pseudonym(KEY)


def test_pseudonym_needs_a_key() -> None:
    with pytest.raises(ValueError, match="key"):
        PatientId.parse(TOLVAN).pseudonym(b"")


@pytest.mark.parametrize(
    ("birth_date", "serial", "coordination", "expected"),
    [
        (date(1912, 12, 12), 121, False, TOLVAN),
        (date(1970, 1, 1), 238, True, "197001612386"),
        (date(2024, 2, 29), 0, False, "202402290007"),
        (date(1999, 12, 31), 999, True, "199912919991"),
    ],
)
def test_make_personnummer_builds_valid_numbers(
    birth_date: date, serial: int, coordination: bool, expected: str
) -> None:
    raw = make_personnummer(birth_date, serial, coordination=coordination)

    assert raw == expected
    patient = PatientId.parse(raw)
    assert patient.birth_date == birth_date
    assert (patient.kind is PatientIdKind.SAMORDNINGSNUMMER) is coordination


@pytest.mark.parametrize("serial", [-1, 1000])
def test_make_personnummer_rejects_serials_outside_three_digits(serial: int) -> None:
    with pytest.raises(ValueError, match="serial"):
        make_personnummer(date(1990, 1, 1), serial)


@pytest.mark.parametrize(("digits", "check"), [("121212121", 2), ("232100001", 6), ("", 0)])
def test_luhn_check_digit(digits: str, check: int) -> None:
    assert luhn_check_digit(digits) == check


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (TOLVAN, True),
        ("191212121213", True),  # the index checks syntax only
        ("19121212T212", True),
        ("19121212p212", True),
        ("19121212F212", True),
        ("19121212X212", False),
        ("19121212-1212", False),
        ("1912121212", False),
        ("1912121212120", False),
        ("", False),
    ],
)
def test_is_ei_patient_id_follows_the_index_pattern(value: str, accepted: bool) -> None:
    assert is_ei_patient_id(value) is accepted


@pytest.mark.parametrize(
    ("raw", "organisation_number", "suffix"),
    [
        ("SE2321000016-1234", "2321000016", "1234"),
        ("SE2321000016-A12b", "2321000016", "A12b"),
        ("SE165565594230-WEBCERT00001", "5565594230", "WEBCERT00001"),  # 12-digit "16" form
        ("SE2321000131-E000000000001", "2321000131", "E000000000001"),
        ("SE2321000016-" + "X" * 18, "2321000016", "X" * 18),  # exactly 31 characters
    ],
)
def test_valid_hsa_ids(raw: str, organisation_number: str, suffix: str) -> None:
    hsa_id = HsaId.parse(raw)

    assert str(hsa_id) == raw
    assert hsa_id.organisation_number == organisation_number
    assert hsa_id.suffix == suffix
    assert is_hsa_id(raw)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "hsa.format"),
        ("SE2321000016", "hsa.format"),  # a suffix is mandatory
        ("SE2321000016-", "hsa.format"),
        ("se2321000016-1234", "hsa.format"),
        ("NO2321000016-1234", "hsa.format"),
        ("SE232100001-1234", "hsa.format"),  # 9-digit organisation number
        ("SE232100-0016-1234", "hsa.format"),
        ("SE2321000016-12 34", "hsa.format"),
        ("SE2321000016-12å4", "hsa.format"),
        ("SE2321000016-a@b", "hsa.format"),
        ("SE2321000016_1234", "hsa.format"),
        (" SE2321000016-1234", "hsa.format"),
        ("SE2321000016-" + "X" * 19, "hsa.length"),  # 32 characters
        ("SE2321000017-1234", "hsa.checksum"),
    ],
)
def test_invalid_hsa_ids(raw: str, code: str) -> None:
    with pytest.raises(InvalidHsaId) as caught:
        HsaId.parse(raw)

    assert caught.value.code == code
    assert not is_hsa_id(raw)
