"""HTTP: compliance search/export/stream/follow-up, the patient's extract, chain verification.

No route updates or deletes a record; patient ids travel in request bodies, never in URLs. Every
answered read of the log is recorded before its answer leaves (``api_reads``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import Field, model_validator

from npo_platform.contracts.events_pb2 import AccessBasis, AccessOutcome
from npo_platform.fhir import FHIR_JSON
from npo_platform.fhir import bundle as fhir_bundle
from npo_platform.identity import (
    AdminClaims,
    Claims,
    ComplianceOfficerClaims,
    HsaIdStr,
    PatientClaims,
    PatientIdStr,
    Role,
    require_roles,
)
from npo_platform.problems import Problem
from npo_platform.schemas import RequestModel

from . import api_export
from .api_reads import ReadAction, given, record_read
from .api_views import chain_views, decode_cursor, encode_cursor, extract_view, record_view
from .config import AuditSettings
from .domain import Record
from .domain_rules import Person, Rule
from .fhir import extract_audit_event
from .service import record_review, verify_log
from .service import search as search_page
from .signing import RegisterKey
from .store import AuditSearch, AuditStore, Live, LiveRecords, ReadLog, SearchFilter

BasisName = Literal["own_care_giver", "consent", "emergency", "patient_self", "no_basis"]
OutcomeName = Literal["allowed", "partial", "denied"]
Conclusion = Literal["justified", "follow_up", "violation"]
INERA_EXTRACT_LIMIT = 10_000


@dataclass
class AuditServices:
    settings: AuditSettings
    store: AuditStore
    queries: AuditSearch
    hub: LiveRecords
    register_key: RegisterKey
    reads: ReadLog  # who read the log (api_reads.py)


def services(request: Request) -> AuditServices:
    found: AuditServices = request.app.state.audit
    return found


Services = Annotated[AuditServices, Depends(services)]


class _Strict(RequestModel):
    """Audit request bodies (the platform's RequestModel)."""


class SearchRequest(_Strict):
    patient_id: PatientIdStr | None = None
    user_hsa_id: HsaIdStr | None = None
    care_unit: HsaIdStr | None = None
    care_giver: HsaIdStr | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None
    basis: BasisName | None = None
    outcome: OutcomeName | None = None
    rule: Rule | None = None
    kind: Literal["access", "consent", "review"] = "access"
    event_id: str | None = Field(None, min_length=1, max_length=200)
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = None

    def to_filter(self) -> SearchFilter:
        return SearchFilter(
            patient_id=self.patient_id, user_hsa_id=self.user_hsa_id, care_unit=self.care_unit,
            care_giver=self.care_giver, time_from=self.time_from, time_to=self.time_to,
            basis=AccessBasis.Value(self.basis.upper()) if self.basis else None,
            outcome=AccessOutcome.Value(self.outcome.upper()) if self.outcome else None,
            rule=self.rule.value if self.rule else None, kind=self.kind, event_id=self.event_id,
        )


class ExtractRequest(_Strict):
    limit: int = Field(1000, ge=1, le=INERA_EXTRACT_LIMIT)
    cursor: str | None = None


class ReviewRequest(_Strict):
    event_id: str | None = None
    flag_id: int | None = Field(None, ge=1, le=2**63 - 1)  # a bigint flag id
    note: str = Field(min_length=1, max_length=4000)
    conclusion: Conclusion | None = None

    @model_validator(mode="after")
    def _one_target(self) -> ReviewRequest:
        if (self.event_id is None) == (self.flag_id is None):
            raise ValueError("name exactly one of event_id and flag_id")
        return self


class FlagSearchRequest(_Strict):
    rule: Rule | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None
    after_flag_id: int = Field(0, ge=0, le=2**63 - 1)  # a bigint flag id
    reviewed: bool | None = None  # False: the sample-check queue
    limit: int = Field(100, ge=1, le=1000)


class StreamRequest(_Strict):
    flags_only: bool = False
    rule: Rule | None = None
    care_unit: HsaIdStr | None = None
    care_giver: HsaIdStr | None = None
    user_hsa_id: HsaIdStr | None = None

    def wants(self, live: Live) -> bool:
        e = live.record.entry
        checks = [
            (not self.flags_only or bool(live.rules)),
            (self.rule is None or self.rule.value in live.rules),
            (self.care_unit is None or e.care_unit == self.care_unit),
            (self.care_giver is None or e.care_giver == self.care_giver),
            (self.user_hsa_id is None or e.user_hsa_id == self.user_hsa_id),
        ]
        return all(checks)


class RegisterEntry(_Strict):
    person: str = Field(min_length=1, max_length=64)  # patient id or staff HSA-id
    surname: str = Field(min_length=1, max_length=200)
    address: str = Field("", max_length=500)


class RegisterRequest(_Strict):
    persons: list[RegisterEntry] = Field(min_length=1, max_length=10_000)


router = APIRouter(prefix="/audit", tags=["audit"])
REGISTER_MAX_BODY = 8 * 1024 * 1024  # 10,000 persons


async def _page(svc: AuditServices, body: SearchRequest) -> tuple[list[Record], dict[str, list[str]]]:
    return await search_page(svc.queries, body.to_filter(), body.limit, decode_cursor(body.cursor))


@router.post("/search")
async def search(body: SearchRequest, svc: Services, officer: ComplianceOfficerClaims) -> dict[str, Any]:
    """Compliance search, newest first; ``next_cursor`` continues it. Recorded as a read of the log."""
    records, flags = await _page(svc, body)
    await record_read(svc.reads, officer, ReadAction.SEARCH, given(body), len(records))
    return {
        "items": [record_view(r, flags.get(r.entry.event_id, ())) for r in records],
        "next_cursor": encode_cursor(records[-1]) if len(records) == body.limit else None,
    }


@router.post("/export")
async def export(
    body: SearchRequest, svc: Services, officer: ComplianceOfficerClaims,
    format: Annotated[Literal["csv", "json", "fhir"], Query()] = "json",
) -> StreamingResponse:
    """Every matching record, as CSV, JSON lines or a FHIR Bundle of AuditEvents; whole, or a
    problem before the first byte (``export.too_large`` past AUDIT_MAX_EXPORT records). Recorded
    as a read of the log, with the count written."""
    if format == "fhir" and body.kind == "review":
        raise Problem(422, "export.no_fhir_form", "Reviews have no FHIR AuditEvent form: export them as CSV.")
    first = body.model_copy(update={"limit": api_export.PAGE})

    async def page(cursor: str | None) -> tuple[list[Record], dict[str, list[str]]]:
        return await _page(svc, first.model_copy(update={"cursor": cursor}))

    rendered, written = await api_export.render(page, body.cursor, format, svc.settings.max_export)
    try:
        await record_read(svc.reads, officer, ReadAction.EXPORT, given(body, format=format), written)
    except BaseException:
        rendered.close()
        raise
    return StreamingResponse(api_export.stream(rendered), media_type=api_export.MEDIA_TYPES[format])


async def _stream_opened(
    body: StreamRequest, svc: Services, officer: ComplianceOfficerClaims
) -> StreamRequest:
    """The stream's read, recorded as a dependency: before the answer's status is sent."""
    await record_read(svc.reads, officer, ReadAction.STREAM, given(body), None)
    return body


@router.post("/stream", response_class=EventSourceResponse)
async def stream(
    body: Annotated[StreamRequest, Depends(_stream_opened)], svc: Services
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: each new record (``record``) as it is committed, with its flags.
    Recorded as a read of the log when it opens (no count: a stream has no end then)."""
    yield ServerSentEvent(event="ready", raw_data="{}")
    async for live in svc.hub.subscribe():
        if live is None:
            yield ServerSentEvent(comment="keepalive")
        elif body.wants(live):
            view = record_view(live.record, live.rules)
            kind = "flag" if live.rules else "record"
            position = f"{live.record.chain}:{live.record.seq}"
            yield ServerSentEvent(event=kind, id=position, raw_data=json.dumps(view))


@router.post("/flags/search")
async def flags(body: FlagSearchRequest, svc: Services, officer: ComplianceOfficerClaims) -> dict[str, Any]:
    """Flags in id order (``reviewed`` false: the sample-check queue); recorded as a read of the log."""
    rows = await svc.queries.flags(body.rule.value if body.rule else None, body.time_from, body.time_to,
                                   body.limit, body.after_flag_id, body.reviewed)
    await record_read(svc.reads, officer, ReadAction.FLAGS, given(body), len(rows))
    items = [{**row.__dict__, "event_time": row.event_time.isoformat()} for row in rows]
    return {"items": items}


@router.post("/reviews", status_code=201)
async def review(body: ReviewRequest, svc: Services, officer: ComplianceOfficerClaims) -> dict[str, Any]:
    """Mark a record or flag reviewed with a note; the review is itself a chained record."""
    event_id = body.event_id
    if body.flag_id is not None:
        found = await svc.queries.flags(None, None, None, 1, body.flag_id - 1)
        if not found or found[0].flag_id != body.flag_id:
            raise Problem(404, "flag.unknown", "No such flag.")
        event_id = found[0].event_id
    target = await svc.queries.find(event_id or "")
    if target is None:
        raise Problem(404, "record.unknown", "No record with that event id.")
    subject = f"flag:{body.flag_id}" if body.flag_id is not None else target.entry.event_id
    appended = await record_review(svc.store, officer, target.entry, subject, body.note,
                                   body.conclusion or "")
    return record_view(appended.stored[0])


@router.post("/extract", response_model=None)
async def extract(
    body: ExtractRequest, svc: Services, patient: PatientClaims,
    format: Annotated[Literal["json", "fhir"], Query()] = "json",
) -> dict[str, Any] | JSONResponse:
    """The patient's own log extract (Inera's contract: at most 10,000 records per call); as FHIR,
    a Bundle of AuditEvents naming care giver and unit, never the reader (as the JSON extract)."""
    if patient.patient is None:
        raise Problem(403, "patient.missing", "The token names no patient.")
    records = await svc.queries.extract(patient.patient, body.limit, decode_cursor(body.cursor))
    if format == "fhir":
        found = fhir_bundle("collection", [extract_audit_event(r) for r in records],
                            timestamp=datetime.now(UTC).isoformat())
        more = {"NPO-Next-Cursor": encode_cursor(records[-1])} if len(records) == body.limit else {}
        return JSONResponse(found, media_type=FHIR_JSON, headers=more)
    return {
        "items": [extract_view(r) for r in records],
        "next_cursor": encode_cursor(records[-1]) if len(records) == body.limit else None,
    }


VerifierClaims = Annotated[Claims, Depends(require_roles(Role.COMPLIANCE_OFFICER, Role.OPERATOR))]


@router.post("/verify")
async def verify(request: Request, svc: Services, _: VerifierClaims) -> dict[str, Any]:
    """Recompute every chain against the signed checkpoints (slow on a large log)."""
    report = await verify_log(svc.store, request.app.state.checkpoint_verifier)
    return {"ok": report.ok, "verified": report.verified, "checked_at": datetime.now(UTC).isoformat(),
            "chains": chain_views(report), "findings": [f.describe() for f in report.findings[:100]]}


@router.put("/register", status_code=204)
async def register(body: RegisterRequest, svc: Services, _: AdminClaims) -> None:
    """Load population/staff register facts for the kinship rule (addresses kept as digests)."""
    persons = {
        p.person: Person(p.surname.casefold(), svc.register_key.digest(p.address) if p.address else "")
        for p in body.persons
    }
    await svc.store.register_persons(persons)
