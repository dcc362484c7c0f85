"""The 17 information categories of the patient overview (design.md §5.2), as one immutable table.

Categories 1-11 are available; 12-17 are "coming" in the seed and are treated like the rest.

Three categories have no national (RIV) codes in the seed. The project defines them here, once,
in its own ``npo:`` namespace so that they can never collide with a real RIV service domain:

- 12 Tillväxtkurvor (growth): ``npo:clinicalprocess:healthcond:growth`` / ``npo-gro``,
  contract ``GetGrowthMeasurements``
- 15 Formulär (forms): ``npo:clinicalprocess:activity:forms`` / ``npo-frm``,
  contract ``GetForms``
- 17 Mikrobiologi (microbiology): ``npo:clinicalprocess:healthcond:microbiology`` / ``npo-mib``,
  contract ``GetMicrobiologyOutcome``

These entries have ``project_defined=True``. Category 10 has two categorizations (``fun-fun`` for
functional status and ``pad-pad`` for ADL); every other category has one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class InformationCategory:
    number: int
    name_sv: str
    name_en: str
    key: str  # short snake_case slug, stable in URLs, metrics and configuration
    service_domain: str
    categorizations: tuple[str, ...]
    contract: str
    available: bool
    project_defined: bool = False

    @property
    def codes(self) -> tuple[tuple[str, str], ...]:
        """Every (serviceDomain, categorization) pair that denotes this category."""
        return tuple((self.service_domain, c) for c in self.categorizations)


class UnknownCategory(LookupError):
    """No category matches; ``code`` is ``category.unknown``."""

    code = "category.unknown"


_DESCRIPTION = "riv:clinicalprocess:healthcond:description"
_ACTOUTCOME = "riv:clinicalprocess:healthcond:actoutcome"
_PRESCRIPTION = "riv:clinicalprocess:activityprescription:actoutcome"
_LOGISTICS = "riv:clinicalprocess:logistics:logistics"
# project-defined service domains (see the module docstring)
_GROWTH = "npo:clinicalprocess:healthcond:growth"
_FORMS = "npo:clinicalprocess:activity:forms"
_MICROBIOLOGY = "npo:clinicalprocess:healthcond:microbiology"
_LAST_AVAILABLE = 11  # categories 1-11 exist today; 12-17 are "coming" in the seed
_PROJECT_DOMAINS = frozenset({_GROWTH, _FORMS, _MICROBIOLOGY})

# fmt: off
_ROWS: tuple[tuple[int, str, str, str, str, tuple[str, ...], str], ...] = (
    # number, Swedish name, English name, key, serviceDomain, categorizations, contract
    (1, "Diagnoser", "Diagnoses", "diagnoses", _DESCRIPTION, ("dia",), "GetDiagnosis"),
    (2, "Läkemedel", "Medication history", "medications", _PRESCRIPTION, ("caa-gmh",),
        "GetMedicationHistory"),
    (3, "Röntgenremisser", "Imaging outcomes", "imaging", _ACTOUTCOME, ("und-bdi-ure",),
        "GetImagingOutcome"),
    (4, "Provsvar", "Laboratory outcomes", "laboratory", _ACTOUTCOME, ("und-kkm-ure",),
        "GetLaboratoryOrderOutcome"),
    (5, "Konsultationsremisser", "Consultation referrals", "consultations", _ACTOUTCOME,
        ("und-kon-ure",), "GetReferralOutcome"),
    (6, "Uppmärksamhetsinformation", "Alerts", "alerts", _DESCRIPTION, ("upp",),
        "GetAlertInformation"),
    (7, "Vårdkontakter", "Care contacts", "care_contacts", _LOGISTICS, ("vko",),
        "GetCareContacts"),
    (8, "Anteckningar", "Notes", "notes", _DESCRIPTION, ("voo",), "GetCareDocumentation"),
    (9, "Vaccinationer", "Vaccinations", "vaccinations", _PRESCRIPTION, ("caa-gvh",),
        "GetVaccinationHistory"),
    (10, "Funktionsstatus & ADL", "Functional status and ADL", "functional_status",
        _DESCRIPTION, ("fun-fun", "pad-pad"), "GetFunctionalStatus"),
    (11, "Vårdplan", "Care plans", "care_plans", _LOGISTICS, ("cll-cp",), "GetCarePlans"),
    (12, "Tillväxtkurvor", "Growth charts", "growth", _GROWTH, ("npo-gro",),
        "GetGrowthMeasurements"),
    (13, "Mödravård", "Maternity care", "maternity", _ACTOUTCOME, ("utr-mtr",),
        "GetMaternityMedicalHistory"),
    (14, "Remisser, flöde", "Referral flow", "referral_flow", "riv:crm:requeststatus",
        ("req-act",), "GetRequestActivities"),
    (15, "Formulär", "Forms", "forms", _FORMS, ("npo-frm",), "GetForms"),
    (16, "EKG", "ECG", "ecg", _ACTOUTCOME, ("und-ekg-ure",), "GetECGOutcome"),
    (17, "Mikrobiologi", "Microbiology", "microbiology", _MICROBIOLOGY, ("npo-mib",),
        "GetMicrobiologyOutcome"),
)
# fmt: on

CATEGORIES: tuple[InformationCategory, ...] = tuple(
    InformationCategory(*row, available=row[0] <= _LAST_AVAILABLE, project_defined=row[4] in _PROJECT_DOMAINS)
    for row in _ROWS
)

AVAILABLE_CATEGORIES: tuple[InformationCategory, ...] = tuple(c for c in CATEGORIES if c.available)

_BY_NUMBER: Mapping[int, InformationCategory] = MappingProxyType({c.number: c for c in CATEGORIES})
_BY_KEY: Mapping[str, InformationCategory] = MappingProxyType({c.key: c for c in CATEGORIES})
_BY_CODE: Mapping[tuple[str, str], InformationCategory] = MappingProxyType(
    {code: c for c in CATEGORIES for code in c.codes}
)


def by_number(number: int) -> InformationCategory:
    try:
        return _BY_NUMBER[number]
    except KeyError:
        raise UnknownCategory(f"no information category number {number}") from None


def by_key(key: str) -> InformationCategory:
    try:
        return _BY_KEY[key]
    except KeyError:
        raise UnknownCategory(f"no information category with key {key!r}") from None


def in_order(keys: Iterable[str]) -> list[str]:
    """Category ``keys``, each once, in the categories' number order."""
    return sorted(set(keys), key=lambda key: by_key(key).number)


def by_code(service_domain: str, categorization: str) -> InformationCategory:
    """The category an engagement's (serviceDomain, categorization) pair denotes."""
    try:
        return _BY_CODE[(service_domain, categorization)]
    except KeyError:
        raise UnknownCategory(
            f"no information category for {service_domain!r} / {categorization!r}"
        ) from None


def find_by_code(service_domain: str, categorization: str) -> InformationCategory | None:
    """Like ``by_code`` but ``None`` when the pair is not in the table."""
    return _BY_CODE.get((service_domain, categorization))
