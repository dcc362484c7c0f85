"""A FHIR search of one resource type parsed into what to read and what to keep, and the patient
of an IPS ``$summary`` (no I/O).

``patient`` (also ``patient:identifier`` and ``patient.identifier``) names exactly one patient by
HL7 Sweden's identifier systems. ``category`` narrows the read to the categories its codes name
(a value list is one parameter's alternatives; repeated parameters must all hold). The type's
date parameter keeps the records whose time it holds; the read still asks every producer of the
categories (the access log says what was read, the answer what was kept). Paging is not offered:
a search is one audited read, answered whole. Unknown parameters are refused (strict handling,
FHIR's ``Prefer: handling=lenient`` ignores them and says so).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from npo_platform.categories import in_order
from npo_platform.fhir import FHIR_JSON
from npo_platform.fhir_http import FhirProblem
from npo_platform.fhir_search import (
    FORM,
    DateBound,
    SearchError,
    check_format,
    date_bound,
    parse_form,
    patient_id,
)
from npo_platform.telemetry import redact

from .domain import Record
from .fhir_records import moment
from .fhir_types import FhirType

MAX_ALTERNATIVES = 20
PATIENT = frozenset({"patient", "patient:identifier", "patient.identifier"})
IPS_BUNDLE = "http://hl7.org/fhir/uv/ips/StructureDefinition/Bundle-uv-ips"
_JSON_TYPES = frozenset({FHIR_JSON, "application/json"})


@dataclass(frozen=True)
class TypeSearch:
    """One type's search: the patient, the categories to read, the date bounds to keep."""

    kind: FhirType
    patient_id: str
    categories: tuple[str, ...]
    dates: tuple[DateBound, ...] = ()
    ignored: tuple[str, ...] = ()

    def keeps(self, record: Record) -> bool:
        if not self.kind.holds(record):
            return False
        if not self.dates:
            return True
        at = moment(record.author_time)
        return all(bound.holds(at) for bound in self.dates)


def parse(kind: FhirType, items: Iterable[tuple[str, str]], *, lenient: bool = False) -> TypeSearch:
    """The search ``items`` (name, value) ask of ``kind``."""
    patients: list[str] = []
    categories = set(kind.categories)
    dates: list[DateBound] = []
    ignored: list[str] = []
    for name, value in items:
        if name == "_format":
            check_format(value)
        elif name not in PATIENT and name != kind.date and not (name == "category" and kind.category_codes):
            shown = redact(name[:60])
            if not lenient:
                raise SearchError("search.parameter_unsupported", f"Unsupported parameter {shown!r} for "
                                  f"{kind.name}; supported: {', '.join(_supported(kind))}.", "not-supported")
            ignored.append(shown)
        elif not value:
            if not lenient:
                raise SearchError("search.value_missing", f"{name} has no value.", "required")
            ignored.append(name)
        elif name in PATIENT:
            patients += _alternatives(value)
        elif name == "category":
            categories &= _categories(kind, _alternatives(value))
        else:
            dates.append(date_bound(value, name))
    if len(patients) != 1:
        raise SearchError("search.patient_required", "Name exactly one patient (patient=system|value).",
                          "required")
    return TypeSearch(kind, patient_id(patients[0]), tuple(in_order(categories)), tuple(dates),
                      tuple(ignored))


def _supported(kind: FhirType) -> list[str]:
    return ["patient", *(["category"] if kind.category_codes else []), *([kind.date] if kind.date else [])]


def _alternatives(value: str) -> list[str]:
    found = value.split(",")
    if len(found) > MAX_ALTERNATIVES:
        raise SearchError("search.too_many_values", f"At most {MAX_ALTERNATIVES} values per parameter.")
    return found


def _categories(kind: FhirType, tokens: list[str]) -> set[str]:
    """The categories any of ``tokens`` names (``system|code``, or ``code`` of any system)."""
    found: set[str] = set()
    for value in tokens:
        system, bar, code = value.rpartition("|")
        named = [keys for (s, c), keys in kind.category_codes.items()
                 if c == code and (not bar or s == system)]
        if not named:
            codes = ", ".join(f"{s}|{c}" for s, c in kind.category_codes)
            raise SearchError("search.category_unknown", f"category of {kind.name} is one of {codes}.",
                              "code-invalid")
        found.update(key for keys in named for key in keys)
    return found


def summary_items(media: str, body: bytes, *, max_fields: int) -> list[tuple[str, str]]:
    """A $summary's parameters: a form, or a Parameters resource (``application/fhir+json``)."""
    if media == FORM:
        return parse_form(body, max_fields=max_fields)
    if media not in _JSON_TYPES:
        raise FhirProblem(415, "summary.media_type", f"Send the identifier as {FORM} or a Parameters "
                          "resource (application/fhir+json).", "not-supported")
    try:
        found = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        found = None
    if not isinstance(found, dict) or found.get("resourceType") != "Parameters":
        raise SearchError("summary.body_invalid", "The body is a FHIR Parameters resource.", "structure")
    parameters = found.get("parameter") or []
    if not isinstance(parameters, list) or len(parameters) > max_fields:
        raise SearchError("summary.body_invalid", f"parameter is a list of at most {max_fields}.",
                          "structure")
    return [_parameter(p) for p in parameters]


def _parameter(parameter: Any) -> tuple[str, str]:
    """(name, value) of one parameter; an Identifier as ``system|value``."""
    if not isinstance(parameter, dict):
        raise SearchError("summary.body_invalid", "Each parameter is an object.", "structure")
    value = parameter.get("valueString", parameter.get("valueUri", parameter.get("valueCanonical")))
    ident = parameter.get("valueIdentifier")
    if isinstance(ident, dict):
        value = f"{ident.get('system', '')}|{ident.get('value', '')}"
    if not isinstance(value, str):
        raise SearchError("summary.body_invalid", "A parameter's value is a string or an Identifier.",
                          "structure")
    return str(parameter.get("name")), value


def summary_patient(items: Iterable[tuple[str, str]]) -> str:
    """The patient of a $summary: ``identifier`` once; ``profile``, when given, IPS's Bundle."""
    identifiers = []
    for name, value in items:
        if name == "identifier":
            identifiers.append(value)
        elif name == "profile" and value != IPS_BUNDLE:
            raise SearchError("summary.profile_unsupported", f"The summary here is {IPS_BUNDLE}.",
                              "not-supported")
        elif name != "profile":
            raise summary_parameter_unsupported(name)
    if len(identifiers) != 1:
        raise SearchError("summary.identifier_required", "Name the patient once: identifier=system|value.",
                          "required")
    return patient_id(identifiers[0])


def summary_parameter_unsupported(name: str) -> SearchError:
    return SearchError("summary.parameter_unsupported", f"Unsupported parameter {redact(name[:60])!r}; "
                       "supported: identifier, profile.", "not-supported")
