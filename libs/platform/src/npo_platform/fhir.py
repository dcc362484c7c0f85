"""FHIR R4 building blocks shared by the services (plain JSON dicts, no domain rules).

Identifier systems follow HL7 Sweden's base profiles (HL7Sweden/basprofiler-r4): personnummer
and samordningsnummer by their NamingSystem URIs, HSA-ids by the system the base profiles give
Practitioner and Organization. Bundle entries always carry a ``fullUrl`` (``urn:uuid:`` when the
resource has no server URL). The tests check every resource built here with HAPI FHIR's
validator (``npo_deploy.fhir_validator``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from npo_platform.identifiers import InvalidPatientId, PatientId, PatientIdKind

FHIR_JSON = "application/fhir+json"
PERSONNUMMER_SYSTEM = "http://electronichealth.se/identifier/personnummer"
SAMORDNINGSNUMMER_SYSTEM = "http://electronichealth.se/identifier/samordningsnummer"
HSA_ID_SYSTEM = "urn:oid:1.2.752.29.4.19"
PROBLEM_SYSTEM = "urn:npo:problem"  # the stable codes of problem details, in FHIR too
PATIENT_ID_SYSTEMS = frozenset({PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM})
# A resource without a UUID id gets a stable name-based one in this namespace for its fullUrl.
_FULL_URL_NAMESPACE = uuid.UUID("5c0b7e52-2f0e-4a7c-9d35-6f1f2a9e8b41")

Resource = dict[str, Any]
Severity = Literal["fatal", "error", "warning", "information"]


def patient_id_system(patient_id: str) -> str:
    """The identifier system of a personnummer or samordningsnummer (day of birth + 60)."""
    try:
        kind = PatientId(patient_id).kind
    except InvalidPatientId:
        kind = PatientIdKind.PERSONNUMMER  # not ours to judge here: named as it was given
    return SAMORDNINGSNUMMER_SYSTEM if kind is PatientIdKind.SAMORDNINGSNUMMER else PERSONNUMMER_SYSTEM


def patient_identifier(patient_id: str) -> Resource:
    return {"system": patient_id_system(patient_id), "value": patient_id}


def hsa_identifier(hsa_id: str) -> Resource:
    return {"system": HSA_ID_SYSTEM, "value": hsa_id}


def patient_reference(patient_id: str) -> Resource:
    """A Reference(Patient) by identifier: the patient has no resource URL in this system."""
    return {"type": "Patient", "identifier": patient_identifier(patient_id)}


def coding(system: str, code: str, display: str | None = None) -> Resource:
    return {"system": system, "code": code, **({"display": display} if display else {})}


def concept(system: str, code: str, display: str | None = None, text: str | None = None) -> Resource:
    """A CodeableConcept of one coding (and a text when given)."""
    return {"coding": [coding(system, code, display)], **({"text": text} if text else {})}


def full_url(resource: Mapping[str, Any]) -> str:
    """``urn:uuid:`` of the resource's id when it is a UUID, else a UUID derived from type and id."""
    ident = str(resource.get("id", ""))
    try:
        return f"urn:uuid:{uuid.UUID(ident)}"
    except ValueError:
        name = f"{resource.get('resourceType', '')}/{ident}" if ident else str(uuid.uuid4())
        return f"urn:uuid:{uuid.uuid5(_FULL_URL_NAMESPACE, name)}"


def entry(resource: Resource, **extra: Any) -> Resource:
    """A Bundle entry with its fullUrl; ``extra`` adds e.g. ``search``."""
    return {"fullUrl": full_url(resource), "resource": resource, **extra}


def bundle(kind: str, resources: Iterable[Resource], *, links: Sequence[tuple[str, str]] = (),
           total: int | None = None, **extra: Any) -> Resource:
    """A Bundle of ``kind`` (collection, searchset, document…); ``links`` as (relation, url).
    No ``entry`` when there are none: FHIR's JSON has no empty arrays."""
    return _bundle(kind, [entry(r) for r in resources], links, total, extra)


def _bundle(kind: str, entries: list[Resource], links: Sequence[tuple[str, str]], total: int | None,
            extra: Mapping[str, Any]) -> Resource:
    found: Resource = {"resourceType": "Bundle", "type": kind, **extra}
    if total is not None:
        found["total"] = total
    if links:
        found["link"] = [{"relation": relation, "url": url} for relation, url in links]
    if entries:
        found["entry"] = entries
    return found


def searchset(matches: Iterable[Resource], *, links: Sequence[tuple[str, str]] = (),
              outcome: Resource | None = None, outcomes: Iterable[Resource] = (),
              total: int | None = None, **extra: Any) -> Resource:
    """A searchset Bundle: ``matches`` (search mode ``match``), then an OperationOutcome about the
    search itself (mode ``outcome``) when given, then ``outcomes`` (each an entry of its own, e.g.
    one per source that could not answer); ``links`` as (relation, url)."""
    entries = [entry(r, search={"mode": "match"}) for r in matches]
    for found in ([outcome] if outcome is not None else []) + list(outcomes):
        entries.append(entry(found, search={"mode": "outcome"}))
    return _bundle("searchset", entries, links, total, extra)


@dataclass(frozen=True)
class OutcomeIssue:
    """One issue of an OperationOutcome: severity, FHIR issue type code, text for people."""

    severity: Severity
    code: str
    text: str
    detail_code: str = ""  # a stable machine code of this project (PROBLEM_SYSTEM)


def operation_outcome(issues: Iterable[OutcomeIssue], resource_id: str | None = None) -> Resource:
    found: Resource = {"resourceType": "OperationOutcome"}
    if resource_id:
        found["id"] = resource_id
    found["issue"] = [_issue(i) for i in issues]
    return found


def _issue(issue: OutcomeIssue) -> Resource:
    details: Resource = {"text": issue.text}
    if issue.detail_code:
        details["coding"] = [coding(PROBLEM_SYSTEM, issue.detail_code)]
    return {"severity": issue.severity, "code": issue.code, "details": details}
