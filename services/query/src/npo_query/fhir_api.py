"""HTTP in FHIR R4: parse the search or operation, call the overview use case, render FHIR.

``POST /fhir/r4/<Type>/_search`` (FHIR's search by POST: the patient in a form body, never in a
URL) answers a searchset Bundle of the type's records and one OperationOutcome entry per producer
that failed or was withheld; ``POST /fhir/r4/Patient/$summary`` answers the IPS document of the
same read over the summary's categories; ``GET /fhir/r4/metadata`` the CapabilityStatement. No rule
of access nor of audit lives here: the use case decides, filters and writes the access event
before anything is rendered. Refusals are OperationOutcomes: 403 when the read is denied, 503
(and no data) when it cannot be logged or decided.

The metadata needs no token, as FHIR clients expect (SMART's discovery reads it before having
one): it is the same for everyone and says nothing of any patient.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from npo_platform.fhir import FHIR_JSON, patient_reference, searchset
from npo_platform.fhir_http import FhirRoute, outcome_response
from npo_platform.fhir_search import (
    FORM,
    SearchError,
    body_of,
    check_format,
    form_items,
    ignored_outcome,
    lenient,
    media_type,
)
from npo_platform.identity import Claims, ClinicianClaims

from .api import bearer_of, context
from .fhir_capability import capability_statement
from .fhir_ips import IPS_CATEGORIES, read_identifier, summary
from .fhir_outcomes import denial, outcomes, told_issues
from .fhir_params import PATIENT, parse, summary_items, summary_parameter_unsupported, summary_patient
from .fhir_records import ByIdentifier, resource_of
from .fhir_types import FHIR_TYPES
from .service import AccessDenied, Overview, Reading, Refused, ServiceUnavailable

MAX_BODY_BYTES = 16 * 1024
MAX_FIELDS = 100
_TEXT: dict[str, Any] = {"type": "string", "maxLength": 500}


def _answers(ok: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": text, "content": {FHIR_JSON: {"schema": {"type": "object"}}}}
            for status, text in ((200, ok), (400, "OperationOutcome: a parameter it cannot use"),
                                 (403, "OperationOutcome: the read is denied"),
                                 (503, "OperationOutcome: the read cannot be logged or decided; no data"))}


router = APIRouter(prefix="/fhir/r4", tags=["fhir"], route_class=FhirRoute)
ResourceType = Annotated[str, Path(pattern=f"^({'|'.join(FHIR_TYPES)})$")]


@router.get("/metadata", response_class=JSONResponse,
            responses={200: {"content": {FHIR_JSON: {"schema": {"type": "object"}}}}})
async def metadata() -> JSONResponse:
    """The CapabilityStatement (no token needed)."""
    return JSONResponse(capability_statement(), media_type=FHIR_JSON)


@router.post(
    "/{resource_type}/_search", response_class=JSONResponse,
    responses=_answers("a searchset Bundle: the records, then an OperationOutcome per producer without data"),
    openapi_extra={"requestBody": {"required": True, "content": {FORM: {"schema": {
        "type": "object", "properties": {"patient": _TEXT, "category": _TEXT, "date": _TEXT}}}}}},
)
async def search(resource_type: ResourceType, request: Request, claims: ClinicianClaims) -> JSONResponse:
    """The patient's records of one resource type (parameters in the form body)."""
    kind = FHIR_TYPES[resource_type]
    items = _outside_url(request) + await form_items(request, max_bytes=MAX_BODY_BYTES,
                                                     max_fields=MAX_FIELDS)
    parsed = parse(kind, items, lenient=lenient(request))
    note = ignored_outcome(parsed.ignored)
    if not parsed.categories:  # disjoint category parameters: nothing to read, nothing read
        return _fhir(searchset([], outcome=note, total=0, timestamp=_now()))
    try:
        found = await _read(request, claims, parsed.patient_id, list(parsed.categories))
    except Refused as refused:
        return refusal_response(refused)
    refs = ByIdentifier(patient_reference(parsed.patient_id))
    matches = [resource_of(record, refs) for record in found.records if parsed.keeps(record)]
    told = outcomes(told_issues(found.producers, found.blocked_information_exists))
    return _fhir(searchset(matches, outcome=note, outcomes=told, total=len(matches),
                           identifier=read_identifier(found), timestamp=_now()))


@router.post(
    "/Patient/$summary", response_class=JSONResponse,
    responses=_answers("an IPS document Bundle"),
    openapi_extra={"requestBody": {"required": True, "content": {
        FORM: {"schema": {"type": "object", "properties": {"identifier": _TEXT, "profile": _TEXT}}},
        FHIR_JSON: {"schema": {"type": "object"}}}}},
)
async def patient_summary(request: Request, claims: ClinicianClaims) -> JSONResponse:
    """The patient's International Patient Summary: ``identifier`` (system|value) as a form or
    a Parameters body."""
    for name, value in _outside_url(request):
        if name != "_format":
            raise summary_parameter_unsupported(name)
        check_format(value)
    body = await body_of(request, max_bytes=MAX_BODY_BYTES)
    patient = summary_patient(summary_items(media_type(request), body, max_fields=MAX_FIELDS))
    try:
        found = await _read(request, claims, patient, IPS_CATEGORIES)
    except Refused as refused:
        return refusal_response(refused)
    return _fhir(summary(found, datetime.now(UTC)))


async def _read(request: Request, claims: Claims, patient: str, categories: list[str]) -> Overview:
    reading = Reading(claims, bearer_of(request), patient, categories)
    return await context(request).overviews.overview(reading)


def refusal_response(refused: Refused) -> JSONResponse:
    """A refused read as its OperationOutcome: 503 when it cannot be logged or decided (no
    data), else 403; a denial by the access decision also gives its reason and the withheld
    producers the reader may know."""
    if isinstance(refused, AccessDenied):
        return JSONResponse(denial(refused), status_code=403, media_type=FHIR_JSON)
    status = 503 if isinstance(refused, ServiceUnavailable) else 403
    return outcome_response(status, refused.code, refused.detail)


def _outside_url(request: Request) -> list[tuple[str, str]]:
    """The URL's parameters, which must not name a patient."""
    items = request.query_params.multi_items()
    if any(name in PATIENT or name == "identifier" for name, _ in items):
        raise SearchError("search.patient_in_url", "A patient's identity number never goes in a URL: "
                          "send it in the form body.", "security")
    return items


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _fhir(resource: dict[str, Any]) -> JSONResponse:
    return JSONResponse(resource, media_type=FHIR_JSON)
