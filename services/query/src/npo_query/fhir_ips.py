"""The International Patient Summary (IPS) of one overview, as a FHIR document Bundle (no I/O).

The read behind it asks only the categories a section shows (``IPS_CATEGORIES``), through the
same use case as every other front end, so the same access law and audit hold. The document
is self-contained: the Composition first (LOINC 60591-5), the Patient (known by the identity
number only: birth date from it, name absent), this service as the author (a Device), the care
units as Organizations (HSA-id only), the records, and an OperationOutcome per source that
failed or was withheld, in a section of its own. Every reference is an entry's fullUrl.

The three required sections (problems, allergies and intolerances, medication summary) are
always there; an empty one says why (emptyReason), never where blocked information is: a block
is told only once for the whole document, like the JSON answer's blocked entry.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from npo_platform.categories import in_order
from npo_platform.fhir import Resource, bundle, coding, concept, full_url, hsa_identifier, patient_identifier
from npo_platform.identifiers import PatientId

from .domain import Record, Status, TargetResult
from .fhir_outcomes import outcomes, told_issues
from .fhir_records import LOINC, resource_of
from .service import Overview

EMPTY_REASON = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
SOURCES_SECTION = coding("urn:npo:ips-section", "sources", "Sources without data")
_ABSENT = {"extension": [{"url": DATA_ABSENT, "valueCode": "unknown"}]}
_XHTML = '<div xmlns="http://www.w3.org/1999/xhtml">{}</div>'


@dataclass(frozen=True)
class Section:
    title: str
    loinc: str
    display: str
    categories: tuple[str, ...]
    required: bool = False
    kind: str | None = None  # the one resource type it holds of its categories (alerts: two kinds)


SECTIONS = (
    Section("Problems", "11450-4", "Problem list - Reported", ("diagnoses",), required=True),
    Section("Allergies and Intolerances", "48765-2", "Allergies and adverse reactions Document",
            ("alerts",), required=True, kind="AllergyIntolerance"),
    Section("Medication Summary", "10160-0", "History of Medication use Narrative", ("medications",),
            required=True),
    Section("Immunizations", "11369-6", "History of Immunization Narrative", ("vaccinations",)),
    Section("Results", "30954-2", "Relevant diagnostic tests/laboratory data Narrative",
            ("laboratory", "microbiology", "imaging", "ecg")),
    Section("Vital Signs", "8716-3", "Vital signs", ("growth",)),
    Section("Functional Status", "47420-5", "Functional status assessment note", ("functional_status",)),
    Section("Plan of Care", "18776-5", "Plan of care note", ("care_plans",)),
    Section("History of Pregnancy", "10162-6", "History of pregnancies Narrative", ("maternity",)),
    Section("Alerts", "104605-1", "Alert", ("alerts",), kind="Flag"),
)
IPS_CATEGORIES = in_order(key for section in SECTIONS for key in section.categories)


class InDocument:
    """References to the document's own entries: the Patient, and a care unit's Organization
    (made on first mention, by HSA-id)."""

    def __init__(self, patient_url: str) -> None:
        self._patient = patient_url
        self.organizations: dict[str, Resource] = {}

    def patient(self) -> Resource:
        return {"reference": self._patient}

    def organization(self, hsa_id: str) -> Resource:
        found = self.organizations.get(hsa_id)
        if found is None:
            found = {"resourceType": "Organization", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, hsa_id)),
                     "identifier": [hsa_identifier(hsa_id)], "_name": _ABSENT}
            self.organizations[hsa_id] = found
        return {"reference": full_url(found)}


def summary(found: Overview, now: datetime) -> Resource:
    """The IPS document of ``found`` (an overview of ``IPS_CATEGORIES``), stamped ``now``."""
    patient = _patient(found.reading.patient_id)
    author = {"resourceType": "Device", "id": str(uuid.uuid4()),
              "deviceName": [{"name": "NPO national patient overview", "type": "user-friendly-name"}]}
    refs = InDocument(full_url(patient))
    rendered = [(record, resource_of(record, refs)) for record in found.records]
    sections = [s for s in (_section(spec, rendered, found.producers.results) for spec in SECTIONS) if s]
    problems = outcomes(told_issues(found.producers, found.blocked_information_exists))
    if problems:
        sections.append(_sources(problems))
    composition = {
        "resourceType": "Composition", "id": str(uuid.uuid4()), "status": "final",
        "type": concept(LOINC, "60591-5", "Patient summary Document"),
        "subject": refs.patient(), "date": now.isoformat(), "author": [{"reference": full_url(author)}],
        "title": "International Patient Summary", "section": sections}
    resources = [composition, patient, author, *refs.organizations.values(),
                 *(resource for _, resource in rendered), *problems]
    return bundle("document", resources, identifier=read_identifier(found), timestamp=now.isoformat())


def read_identifier(found: Overview) -> Resource:
    """An answer's identifier (a document's, a searchset's): the read it is, whose access event
    has this id."""
    return {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{found.access_event_id}"}


def _patient(patient_id: str) -> Resource:
    """The patient as this service knows them: the identity number and the birth date in it."""
    return {"resourceType": "Patient", "id": str(uuid.uuid4()),
            "identifier": [patient_identifier(patient_id)], "name": [{"_text": _ABSENT}],
            "birthDate": PatientId.parse(patient_id).birth_date.isoformat()}


def _section(spec: Section, rendered: list[tuple[Record, Resource]],
             results: Iterable[TargetResult]) -> Resource | None:
    chosen = [resource for record, resource in rendered if record.category in spec.categories
              and (spec.kind is None or resource["resourceType"] == spec.kind)]
    if not chosen and not spec.required:
        return None
    found: Resource = {"title": spec.title, "code": concept(LOINC, spec.loinc, spec.display)}
    if chosen:
        lines = "".join(f"<li>{html.escape(_line(r))}</li>" for r in chosen)
        found["text"] = _narrative(f"<ul>{lines}</ul>")
        found["entry"] = [{"reference": full_url(r)} for r in chosen]
        return found
    reason, text = _empty(spec, results)
    found["text"] = _narrative(f"<p>{html.escape(text)}</p>")
    found["emptyReason"] = concept(EMPTY_REASON, *reason)
    return found


def _empty(spec: Section, results: Iterable[TargetResult]) -> tuple[tuple[str, str], str]:
    """Why a required section is empty, from what the reader is told of its categories' sources."""
    statuses = {r.status for r in results if r.target.category in spec.categories}
    if statuses & {Status.NO_DATA_SYNCH_FAILED, Status.NOT_AUTHORISED_BY_ROUTING}:
        return ("unavailable", "Unavailable"), "No entries: a source of this information gave no data."
    if Status.WITHHELD_BY_DECISION in statuses:
        return ("withheld", "Information Withheld"), "No entries: the access decision withholds a source."
    return ("unavailable", "Unavailable"), "No entries: no source this reader may see holds such information."


def _sources(problems: list[Resource]) -> Resource:
    lines = "".join(f"<li>{html.escape(p['issue'][0]['details']['text'])}</li>" for p in problems)
    return {"title": "Sources without data", "code": {"coding": [SOURCES_SECTION]},
            "text": _narrative(f"<ul>{lines}</ul>"), "entry": [{"reference": full_url(p)} for p in problems]}


def _narrative(inner: str) -> Resource:
    return {"status": "generated", "div": _XHTML.format(inner)}


def _line(resource: Resource) -> str:
    """A resource's line in its section's narrative: when, what, and a measured value."""
    when = next((str(resource[k]) for k in ("recordedDate", "effectiveDateTime", "occurrenceDateTime",
                                             "date", "created") if k in resource), "")
    what = next((resource[k]["text"] for k in ("code", "medicationCodeableConcept", "vaccineCode",
                                               "type") if "text" in resource.get(k, {})),
                resource.get("title", resource["resourceType"]))
    quantity = resource.get("valueQuantity", {})
    value = f": {quantity.get('value')} {quantity.get('unit', '')}".rstrip() if quantity else ""
    return f"{when[:10]} {what}{value}".strip()
