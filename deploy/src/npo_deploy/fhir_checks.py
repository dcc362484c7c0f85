"""This project's own checks of the FHIR rules HAPI's validator cannot check offline.

The implementation-guide packages (IHE BALP, IPS) come from the FHIR package registry, which is
not reachable here, so their rules that matter to this project are encoded below and run next to
the validator in the same tests. Each check returns the problems found (empty: it holds).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from npo_platform.fhir import HSA_ID_SYSTEM, PATIENT_ID_SYSTEMS

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"

Json = Mapping[str, Any]


@dataclass(frozen=True)
class Pattern:
    """One BALP RESTful pattern: its subtypes, action, DICOM roles of client and server, user types."""

    subtypes: frozenset[str]
    action: str
    client: str
    server: str
    user_types: frozenset[str]


READ = Pattern(frozenset({"read", "vread"}), "R", "110152", "110153", frozenset({"IRCP"}))
CREATE = Pattern(frozenset({"create"}), "C", "110153", "110152", frozenset({"AUT", "INF", "CST"}))
UPDATE = Pattern(frozenset({"update", "patch"}), "U", "110153", "110152", frozenset({"AUT", "INF", "CST"}))
PATTERNS = {"PatientRead": READ, "PatientCreate": CREATE, "PatientUpdate": UPDATE}
_BY_SUBTYPE = {code: p for p in PATTERNS.values() for code in p.subtypes}


def _codes(concept: Json | None, system: str) -> set[str]:
    codings = (concept or {}).get("coding", [concept] if concept and "code" in concept else [])
    return {str(c.get("code")) for c in codings if c.get("system") == system}


def balp_problems(event: Json) -> list[str]:
    """BALP's Patient* pattern: claimed profiles in full; an unclaimed event (a refusal) in shape,
    with an outcome its contained OperationOutcome agrees with."""
    claimed = [p.removeprefix(BALP) for p in event.get("meta", {}).get("profile", []) if p.startswith(BALP)]
    problems = [f"unknown BALP profile {name}" for name in claimed if name not in PATTERNS]
    subtypes = {c for s in event.get("subtype", []) for c in _codes(s, RESTFUL)}
    pattern = next((_BY_SUBTYPE[s] for s in subtypes if s in _BY_SUBTYPE), None)
    if pattern is None:
        return [*problems, f"no BALP RESTful subtype in {sorted(subtypes)}"]
    if claimed and event.get("outcome") != "0":
        problems.append(f"claims {claimed} (success only) with outcome {event.get('outcome')}")
    if not claimed and event.get("outcome") == "0" and event.get("agent") and _user(event, pattern):
        problems.append("a successful event in BALP's shape does not claim its profile")
    if event.get("outcome") != "0":
        problems += _outcome_problems(event)
    return problems + _shape_problems(event, pattern)


def _shape_problems(event: Json, pattern: Pattern) -> list[str]:
    problems = []
    kind = event.get("type", {})
    if kind.get("system") != AUDIT_TYPE or kind.get("code") != "rest":
        problems.append("type is not audit-event-type#rest")
    if event.get("action") != pattern.action:
        problems.append(f"action {event.get('action')} is not {pattern.action}")
    if not event.get("recorded"):
        problems.append("no recorded time")
    problems += _system_problems(event, pattern.client, "client")
    problems += _system_problems(event, pattern.server, "server")
    user = _user(event, pattern)
    if len(user) > 1:
        problems.append("more than one user agent")
    for agent in user:
        problems += _user_problems(agent)
    return problems + _entity_problems(event)


def _system_problems(event: Json, code: str, name: str) -> list[str]:
    found = [a for a in event.get("agent", []) if code in _codes(a.get("type"), DCM)]
    if len(found) != 1:
        return [f"{len(found)} {name} agents (DCM {code}), BALP wants 1"]
    agent = found[0]
    missing = [f"{name} agent has no {part}" for part in ("who", "network") if not agent.get(part)]
    return missing + ([f"{name} agent has media"] if agent.get("media") else [])


def _user(event: Json, pattern: Pattern) -> list[Json]:
    return [a for a in event.get("agent", []) if _codes(a.get("type"), PARTICIPATION) & pattern.user_types]


def _user_problems(agent: Json) -> list[str]:
    problems = [f"user agent has no {part}" for part in ("who", "name", "role") if not agent.get(part)]
    if agent.get("requestor") is not True:
        problems.append("user agent is not the requestor")
    if agent.get("network") or agent.get("media"):
        problems.append("user agent has a network or media (not allowed)")
    identifier = agent.get("who", {}).get("identifier", {})
    if identifier.get("system") not in {HSA_ID_SYSTEM, *PATIENT_ID_SYSTEMS}:  # staff, or the patient
        problems.append(f"user identifier system {identifier.get('system')} is not HL7 Sweden's")
    return problems


def _entity_problems(event: Json) -> list[str]:
    entities = event.get("entity", [])
    patients = [e for e in entities if _codes(e.get("type"), ENTITY_TYPE) == {"1"}]
    data = [e for e in entities if _codes(e.get("type"), ENTITY_TYPE) == {"2"}]
    requests = [e for e in entities if _codes(e.get("type"), BALP_ENTITY_TYPE) == {"XrequestId"}]
    problems = []
    if len(patients) != 1:
        problems.append(f"{len(patients)} patient entities, BALP wants 1")
    for patient in patients:
        problems += _patient_problems(patient)
    if len(data) != 1:
        problems.append(f"{len(data)} data entities (audit-entity-type#2), BALP wants 1")
    for found in data:
        if not found.get("what"):
            problems.append("data entity has no what")
        if not _codes(found.get("role"), OBJECT_ROLE) <= {"3", "4", "20"} or not found.get("role"):
            problems.append("data entity role is not object-role 4, 3 or 20")
    if len(requests) > 1:
        problems.append("more than one request-id entity")
    problems += [f"request-id entity without a value: {r}" for r in requests
                 if not r.get("what", {}).get("identifier", {}).get("value")]
    return problems


def _patient_problems(patient: Json) -> list[str]:
    problems = []
    if _codes(patient.get("role"), OBJECT_ROLE) != {"1"}:
        problems.append("patient entity role is not object-role#1")
    what = patient.get("what", {})
    if what.get("type") != "Patient" and not str(what.get("reference", "")).startswith("Patient/"):
        problems.append("patient entity what is not a Reference(Patient)")
    if what.get("identifier", {}).get("system") not in PATIENT_ID_SYSTEMS:
        problems.append(f"patient identifier system {what.get('identifier', {}).get('system')} is "
                        "not HL7 Sweden's personnummer or samordningsnummer")
    return problems


def _outcome_problems(event: Json) -> list[str]:
    """A failure says what the caller was answered: a contained, referenced OperationOutcome whose
    severities agree with the outcome (4: warnings, no error; 8 and 12: an error)."""
    outcomes = [c for c in event.get("contained", []) if c.get("resourceType") == "OperationOutcome"]
    if len(outcomes) != 1:
        return [f"outcome {event.get('outcome')} with {len(outcomes)} contained OperationOutcomes"]
    referenced = {e.get("what", {}).get("reference") for e in event.get("entity", [])}
    problems = [] if f"#{outcomes[0].get('id')}" in referenced else ["the OperationOutcome is not referenced"]
    severities = {i.get("severity") for i in outcomes[0].get("issue", [])}
    failing = bool(severities & {"error", "fatal"})
    if (event.get("outcome") == "4") == failing:
        problems.append(f"outcome {event.get('outcome')} disagrees with severities {sorted(severities)}")
    return problems


def purpose_codes(event: Json) -> set[str]:
    """The purpose-of-use codes (v3-ActReason) of the event and of its requesting agent."""
    concepts = [*event.get("purposeOfEvent", []),
                *(p for a in event.get("agent", []) if a.get("requestor") for p in a.get("purposeOfUse", []))]
    return {code for c in concepts for code in _codes(c, ACT_REASON)}


def bundle_problems(bundle: Json) -> list[str]:
    """Every entry has a fullUrl; without a server URL it is a ``urn:uuid:``; no two alike."""
    urls = [str(e.get("fullUrl", "")) for e in bundle.get("entry", [])]
    problems = [f"entry {i} fullUrl {u!r} is not a urn:uuid"
                for i, u in enumerate(urls) if not _is_urn_uuid(u)]
    return problems + (["fullUrls repeat"] if len(set(urls)) != len(urls) else [])


def _is_urn_uuid(url: str) -> bool:
    try:
        return url.startswith("urn:uuid:") and str(uuid.UUID(url.removeprefix("urn:uuid:"))) == url[9:]
    except ValueError:
        return False


# --- searchset Bundles ------------------------------------------------------------------------

def searchset_problems(bundle: Json) -> list[str]:
    """A searchset: every entry a match or an outcome (an OperationOutcome, and only those), the
    total the number of matches, every entry's fullUrl a urn:uuid."""
    if bundle.get("type") != "searchset":
        return [f"type {bundle.get('type')} is not searchset"]
    problems = bundle_problems(bundle)
    matches = 0
    for i, found in enumerate(bundle.get("entry", [])):
        mode, kind = found.get("search", {}).get("mode"), found.get("resource", {}).get("resourceType")
        if mode not in ("match", "outcome", "include"):
            problems.append(f"entry {i} has search mode {mode}")
        if (mode == "outcome") != (kind == "OperationOutcome"):
            problems.append(f"entry {i}: a {kind} in search mode {mode}")
        matches += mode == "match"
    if "total" in bundle and bundle["total"] != matches:
        problems.append(f"total {bundle['total']} is not the {matches} matches")
    return problems


# --- the International Patient Summary (HL7 IPS 1.1, the EHDS patient summary) ---------------

LOINC = "http://loinc.org"
IPS_DOCUMENT = "60591-5"
IPS_REQUIRED = {"11450-4": "problems", "48765-2": "allergies and intolerances",
                "10160-0": "medication summary"}
# What a section's entries may be (IPS Composition's sections, R4).
IPS_ENTRIES = {
    "11450-4": {"Condition", "DocumentReference"}, "48765-2": {"AllergyIntolerance", "DocumentReference"},
    "10160-0": {"MedicationStatement", "MedicationRequest", "MedicationAdministration", "MedicationDispense",
                "DocumentReference"},
    "11369-6": {"Immunization", "DocumentReference"},
    "30954-2": {"Observation", "DiagnosticReport", "Media", "DocumentReference"},
    "8716-3": {"Observation", "DocumentReference"}, "47519-4": {"Procedure", "DocumentReference"},
    "46264-8": {"DeviceUseStatement", "DocumentReference"},
    "47420-5": {"Condition", "ClinicalImpression", "DocumentReference"},
    "18776-5": {"CarePlan", "DocumentReference"}, "10162-6": {"Observation", "DocumentReference"},
    "104605-1": {"Flag", "DocumentReference"}, "11348-0": {"Condition", "DocumentReference"},
}
# IPS profiles that want the patient as a literal reference (``subject`` or ``patient``).
_PATIENT_OF = {"Condition": "subject", "AllergyIntolerance": "patient", "MedicationStatement": "subject",
               "Immunization": "patient", "Observation": "subject", "DiagnosticReport": "subject",
               "Composition": "subject"}
_REQUIRED = {"MedicationStatement": ("effectiveDateTime", "effectivePeriod"), "Condition": ("code",),
             "AllergyIntolerance": ("code",), "Immunization": ("occurrenceDateTime", "occurrenceString")}


def ips_problems(bundle: Json) -> list[str]:
    """The IPS Bundle's rules: a document with identifier and timestamp, the Composition first and
    alone, a Patient, the required sections (each with entries or an emptyReason), a narrative per
    section, entries of the section's kinds, and every reference resolved inside the Bundle."""
    problems = bundle_problems(bundle)
    if bundle.get("type") != "document":
        problems.append(f"type {bundle.get('type')} is not document")
    if not bundle.get("identifier", {}).get("value") or not bundle.get("timestamp"):
        problems.append("no identifier or timestamp")
    entries = bundle.get("entry", [])
    by_url = {e.get("fullUrl"): e.get("resource", {}) for e in entries}
    kinds = [e.get("resource", {}).get("resourceType") for e in entries]
    if not kinds or kinds[0] != "Composition" or kinds.count("Composition") != 1:
        return [*problems, "the Composition is not the first and only Composition"]
    problems += [f"entry {i} has {part}" for i, e in enumerate(entries)
                 for part in ("search", "request", "response") if part in e]
    problems += [f"reference {ref} does not resolve in the Bundle" for ref in _references(bundle)
                 if ref not in by_url]
    composition = entries[0]["resource"]
    if _codes(composition.get("type"), LOINC) != {IPS_DOCUMENT}:
        problems.append("the Composition's type is not LOINC 60591-5")
    patients = [r for r in by_url.values() if r.get("resourceType") == "Patient"]
    if len(patients) != 1:
        return [*problems, f"{len(patients)} Patients, IPS wants 1"]
    problems += _ips_patient_problems(patients[0])
    patient_url = next(url for url, r in by_url.items() if r is patients[0])
    for resource in by_url.values():
        kind = str(resource.get("resourceType"))
        part = _PATIENT_OF.get(kind)
        if part and resource.get(part, {}).get("reference") != patient_url:
            problems.append(f"{kind}.{part} is not the Patient entry")
        names = _REQUIRED.get(kind, ())
        if names and not any(name in resource for name in names):
            problems.append(f"{kind} has none of {names}")
    return problems + _section_problems(composition.get("section", []), by_url)


def _ips_patient_problems(patient: Json) -> list[str]:
    names = patient.get("name", [])
    named = any(any(k in n for k in ("family", "_family", "given", "_given", "text", "_text")) for n in names)
    return ([] if named else ["ips-pat-1: the Patient's name has no family, given or text"]) + (
        [] if patient.get("birthDate") else ["the Patient has no birthDate"])


def _section_problems(sections: list[Json], by_url: Mapping[Any, Json]) -> list[str]:
    problems = []
    codes = [next(iter(_codes(s.get("code"), LOINC)), None) for s in sections]
    for required, name in IPS_REQUIRED.items():
        if codes.count(required) != 1:
            problems.append(f"{codes.count(required)} {name} sections ({required}), IPS wants 1")
    for code, section in zip(codes, sections, strict=True):
        title = section.get("title")
        if not title or not section.get("text", {}).get("div"):
            problems.append(f"section {title or code} has no title or narrative")
        refs = [e.get("reference") for e in section.get("entry", [])]
        if code in IPS_REQUIRED and not refs and not section.get("emptyReason"):
            problems.append(f"ips-comp-1: section {title} has neither entries nor an emptyReason")
        allowed = IPS_ENTRIES.get(code or "")
        problems += [f"section {title} holds a {by_url.get(ref, {}).get('resourceType')}" for ref in refs
                     if allowed and by_url.get(ref, {}).get("resourceType") not in allowed]
    return problems


def _references(value: Any) -> list[str]:
    """Every literal ``reference`` in ``value`` (contained ``#`` references aside)."""
    if isinstance(value, list):
        return [ref for item in value for ref in _references(item)]
    if not isinstance(value, Mapping):
        return []
    own = [str(value["reference"])] if isinstance(value.get("reference"), str) else []
    return [r for r in own if not r.startswith("#")] + [
        ref for key, item in value.items() if key != "reference" for ref in _references(item)]
