"""Which FHIR resource type holds which information categories, and what a search of it may say.

Every category is read as exactly one type, so a search of every type together reads each
category once. Alerts are read for two types and split by content: a hypersensitivity is an
AllergyIntolerance, any other alert a Flag. A category without a structured body of its own
(notes, functional status, maternity care, forms) is a DocumentReference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from npo_platform.categories import by_key

from .domain import Record
from .fhir_records import DIAGNOSTIC_SERVICE, NPO_CATEGORY, OBSERVATION_CATEGORY, is_hypersensitivity

Token = tuple[str, str]  # (system, code)


@dataclass(frozen=True)
class FhirType:
    """A resource type the overview answers: the categories a search of it reads, the name of its
    search parameter on the record's time (None: no such parameter), and the codes its
    ``category`` parameter takes, each naming the categories it narrows the read to."""

    name: str
    categories: tuple[str, ...]
    date: str | None = "date"
    category_codes: Mapping[Token, tuple[str, ...]] = field(default_factory=dict)

    def holds(self, record: Record) -> bool:
        """Whether ``record`` is rendered as this type (alerts: by content)."""
        if record.category not in self.categories:
            return False
        allergy = self.name == "AllergyIntolerance"
        return record.category != "alerts" or is_hypersensitivity(record) == allergy


def _by_npo_category(*keys: str) -> dict[Token, tuple[str, ...]]:
    return {(NPO_CATEGORY, key): (by_key(key).key,) for key in keys}


_TYPES = (
    FhirType("Condition", ("diagnoses",), date="recorded-date"),
    FhirType("MedicationStatement", ("medications",), date="effective"),
    FhirType("Observation", ("laboratory", "microbiology", "growth"), category_codes={
        (OBSERVATION_CATEGORY, "laboratory"): ("laboratory", "microbiology"),
        (OBSERVATION_CATEGORY, "vital-signs"): ("growth",)}),
    FhirType("DiagnosticReport", ("imaging", "ecg"), category_codes={
        (DIAGNOSTIC_SERVICE, "RAD"): ("imaging",), (DIAGNOSTIC_SERVICE, "EC"): ("ecg",)}),
    FhirType("ServiceRequest", ("consultations", "referral_flow"), date="authored",
             category_codes=_by_npo_category("consultations", "referral_flow")),
    FhirType("AllergyIntolerance", ("alerts",)),
    FhirType("Flag", ("alerts",)),
    FhirType("Encounter", ("care_contacts",)),
    FhirType("Immunization", ("vaccinations",)),
    FhirType("CarePlan", ("care_plans",), date=None),
    FhirType("DocumentReference", ("notes", "functional_status", "maternity", "forms"),
             category_codes=_by_npo_category("notes", "functional_status", "maternity", "forms")),
)
FHIR_TYPES: Mapping[str, FhirType] = MappingProxyType({t.name: t for t in _TYPES})
