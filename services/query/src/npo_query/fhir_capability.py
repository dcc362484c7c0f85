"""The query service's FHIR CapabilityStatement, made from the same table as its routes (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from importlib.metadata import version

from npo_platform.fhir import FHIR_JSON, Resource, concept

from .fhir_types import FHIR_TYPES, FhirType

IPS_SUMMARY = "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"
_SECURITY = "http://terminology.hl7.org/CodeSystem/restful-security-service"
_PATIENT = ("The patient's identity number as system|value (HL7 Sweden's personnummer or "
            "samordningsnummer system), also as patient:identifier or patient.identifier; required, "
            "one patient per search, in the form body only.")
_STARTED = datetime.now(UTC).replace(microsecond=0).isoformat()  # this instance's statement


@cache
def capability_statement() -> Resource:
    """What this server offers: a search by POST per type, and the IPS $summary of a Patient."""
    resources = [_resource(t) for t in FHIR_TYPES.values()]
    summary = {"name": "summary", "definition": IPS_SUMMARY,
               "documentation": "POST with the identifier (system|value) as a form or Parameters body."}
    resources.append({"type": "Patient", "operation": [summary]})
    rest = {"mode": "server",
            "documentation": "The national patient overview, read as the JSON overview is read: same "
                             "decision, access law per record and access log written before the answer.",
            "security": {"cors": False, "service": [concept(_SECURITY, "OAuth", "OAuth")],
                         "description": "A bearer token of the national issuer with the clinician role; "
                                        "only this statement needs none."},
            "resource": resources}
    return {"resourceType": "CapabilityStatement", "status": "active", "date": _STARTED,
            "publisher": "NPO", "kind": "instance",
            "software": {"name": "npo-query", "version": version("npo-query")},
            "implementation": {"description": "NPO national patient overview: the overview for FHIR clients"},
            "fhirVersion": "4.0.1", "format": [FHIR_JSON, "json"], "rest": [rest]}


def _resource(kind: FhirType) -> Resource:
    params: list[Resource] = [{"name": "patient", "type": "reference", "documentation": _PATIENT}]
    if kind.category_codes:
        codes = ", ".join(f"{system}|{code}" for system, code in kind.category_codes)
        params.append({"name": "category", "type": "token", "documentation": f"One of {codes}."})
    if kind.date:
        params.append({"name": kind.date, "type": "date",
                       "documentation": "The record's time; eq, ge, gt, le, lt at the precision given."})
    return {"type": kind.name,
            "interaction": [{"code": "search-type", "documentation": "POST [type]/_search, form body."}],
            "searchParam": params}
