"""A FHIR search of one resource type parsed into what to read and what to keep (no I/O).

``patient`` (also ``patient:identifier`` and ``patient.identifier``) names exactly one patient by
HL7 Sweden's identifier systems. ``category`` narrows the read to the categories its codes name
(a value list is one parameter's alternatives; repeated parameters must all hold). The type's
date parameter keeps the records whose time it holds; the read still asks every producer of the
categories (the access log says what was read, the answer what was kept). Paging is not offered:
a search is one audited read, answered whole. Unknown parameters are refused (strict handling,
FHIR's ``Prefer: handling=lenient`` ignores them and says so).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from npo_platform.categories import by_key
from npo_platform.fhir_search import DateBound, SearchError, check_format, date_bound, patient_id
from npo_platform.telemetry import redact

from .domain import Record
from .fhir_records import moment
from .fhir_types import FhirType

MAX_ALTERNATIVES = 20
PATIENT = frozenset({"patient", "patient:identifier", "patient.identifier"})


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
        return not self.dates or all(bound.holds(moment(record.author_time)) for bound in self.dates)


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
    ordered = tuple(sorted(categories, key=lambda key: by_key(key).number))
    return TypeSearch(kind, patient_id(patients[0]), ordered, tuple(dates), tuple(ignored))


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

