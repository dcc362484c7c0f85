"""HTTP: the FHIR R4 AuditEvent search of the log for compliance officers.

``POST /fhir/r4/AuditEvent/_search`` with a form body (FHIR's search by POST), so a patient's
identity number never reaches a URL, an access log or a trace; ``GET /fhir/r4/AuditEvent`` for
searches without a patient and for the paging links. The answer is a searchset Bundle of the
export's AuditEvents (``fhir.audit_event``); its ``self``, ``next`` and ``previous`` links carry only
an encrypted continuation token (``fhir_search_pages``). Errors are OperationOutcomes.

As with the compliance search (``POST /audit/search``), a search is traced as its HTTP request
(route and status, never a parameter), and each answered page is recorded as a read of the log
(``api_reads``: the parameters as given, or the search a ``_page`` continues) before it leaves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from npo_platform.fhir import FHIR_JSON, searchset
from npo_platform.fhir_http import FhirRoute
from npo_platform.fhir_search import FORM, SearchError, form_items, ignored_outcome, lenient
from npo_platform.identity import Claims, ComplianceOfficerClaims

from .api import AuditServices, Services
from .api_reads import ReadAction, record_read
from .fhir import audit_event
from .fhir_search_pages import PageTokens, search_json
from .fhir_search_params import PAGE, parse
from .store import Found, Position, cursor_of

MAX_FORM_BYTES = 16 * 1024
_MAX_FIELDS = 200
_TEXT: dict[str, Any] = {"type": "string", "maxLength": 500}
_MANY: dict[str, Any] = {"type": "array", "items": _TEXT, "maxItems": 8}
_FIELDS: dict[str, dict[str, Any]] = {
    "agent": _MANY, "date": _MANY, "outcome": _TEXT, "_count": _TEXT,
    PAGE: {"type": "string", "maxLength": 1000},
}
_FHIR_ANSWERS: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": {FHIR_JSON: {"schema": {"type": "object"}}}}
    for status, text in ((200, "a searchset Bundle of AuditEvents"),
                         (400, "an OperationOutcome: a parameter or _page the search cannot use"))
}

router = APIRouter(prefix="/fhir/r4", tags=["fhir"], route_class=FhirRoute)


def page_tokens(request: Request) -> PageTokens:
    found: PageTokens = request.app.state.fhir_page_tokens
    return found


@router.post(
    "/AuditEvent/_search", response_class=JSONResponse, responses=_FHIR_ANSWERS,
    openapi_extra={"requestBody": {"required": False, "content": {FORM: {"schema": {
        "type": "object", "properties": {"patient": _TEXT, **_FIELDS}}}}}},
)
async def search_by_post(request: Request, svc: Services, officer: ComplianceOfficerClaims) -> JSONResponse:
    """Search the log's AuditEvents (parameters in the form body; ``patient`` only there)."""
    in_url = request.query_params.multi_items()
    form = await form_items(request, max_bytes=MAX_FORM_BYTES, max_fields=_MAX_FIELDS)
    return await _answer(request, svc, officer, _without_patient(in_url) + form)


@router.get(
    "/AuditEvent", response_class=JSONResponse, responses=_FHIR_ANSWERS,
    openapi_extra={"parameters": [{"name": name, "in": "query", "required": False, "schema": schema,
                                   **({"style": "form", "explode": True} if "items" in schema else {})}
                                  for name, schema in _FIELDS.items()]},
)
async def search_by_get(request: Request, svc: Services, officer: ComplianceOfficerClaims) -> JSONResponse:
    """Search without a patient, or follow a paging link."""
    return await _answer(request, svc, officer, _without_patient(request.query_params.multi_items()))


def _without_patient(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if any(name.partition(":")[0] == "patient" for name, _ in items):
        raise SearchError("search.patient_in_url", "A patient's identity number never goes in a URL: "
                          "POST /fhir/r4/AuditEvent/_search with the parameters as a form body.", "security")
    return items


async def _answer(request: Request, svc: AuditServices, officer: Claims,
                  items: list[tuple[str, str]]) -> JSONResponse:
    parsed = parse(items, lenient=lenient(request))
    tokens = page_tokens(request)
    if parsed.page_token is not None:
        search, position = tokens.open(parsed.page_token, officer.sub)
        here = parsed.page_token
    else:
        search, position = parsed.search, Position()
        here = tokens.issue(officer.sub, search, position)
    found = await svc.queries.audit_events(search, position)
    given = ({"parameters": [list(item) for item in items]} if parsed.page_token is None
             else {"continues": search_json(search)})
    await record_read(svc.reads, officer, ReadAction.FHIR_SEARCH, given, len(found.records))

    def link(token: str) -> str:
        return f"{request.base_url}fhir/r4/AuditEvent?{urlencode({PAGE: token})}"

    links = [("self", link(here))]
    links += [(relation, link(tokens.issue(officer.sub, search, to)))
              for relation, to in _neighbours(found, position)]
    bundle = searchset([audit_event(r) for r in found.records], links=links,
                       outcome=ignored_outcome(parsed.ignored), timestamp=datetime.now(UTC).isoformat())
    return JSONResponse(bundle, media_type=FHIR_JSON)


def _neighbours(found: Found, position: Position) -> list[tuple[str, Position]]:
    """The ``next`` (older) and ``previous`` (newer) pages next to this one, where there are any."""
    if not found.records:
        return []
    older = found.more if not position.backward else True  # we came back from there
    newer = found.more if position.backward else position.cursor is not None
    return ([("next", Position(cursor_of(found.records[-1])))] if older else []) + (
        [("previous", Position(cursor_of(found.records[0]), backward=True))] if newer else [])
