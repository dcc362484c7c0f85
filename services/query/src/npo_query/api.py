"""HTTP in JSON and server-sent events: parse, call a use case (service.py, push.py), render.

The overview as JSON, the same streamed, push subscriptions and the category list. Refusals come
back as ``service.Refused`` and leave as problem details (RFC 9457) with the same stable code.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import to_json

from npo_platform.categories import CATEGORIES, by_key, by_number, in_order
from npo_platform.identifiers import PatientId
from npo_platform.identity import ClinicianClaims
from npo_platform.problems import Problem
from npo_platform.telemetry import current_trace_id

from .domain import BLOCKED, Record, Status, TargetResult, Told, hidden_by_block, told_of
from .lean_route import LeanClinicianRoute
from .push import Notice, PushService, Subscription
from .service import (
    AccessDenied,
    Denied,
    OverviewService,
    OverviewStream,
    Reading,
    Refused,
)

router = APIRouter(prefix="/v1", tags=["overview"])
push_router = APIRouter(prefix="/v1", tags=["push"])
SSE = "text/event-stream"
KEEP_ALIVE_S = 15.0  # a comment line at least this often keeps proxies from closing a stream


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class OverviewRequest(_Camel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    patient_id: str = Field(min_length=1, max_length=20, repr=False)
    # Category keys ("notes") or numbers ("8"); empty or absent: all 17.
    categories: list[str] = Field(default_factory=list, max_length=17, validate_default=True)

    @field_validator("categories")
    @classmethod
    def _known(cls, values: list[str]) -> list[str]:
        keys = [_key(v) for v in values] or [c.key for c in CATEGORIES]
        return in_order(keys)


def _key(value: str) -> str:
    try:
        return by_number(int(value)).key if value.isdigit() else by_key(value).key
    except LookupError:
        raise ValueError("unknown information category") from None


class SubscribeRequest(OverviewRequest):
    pass


class ProducerOut(_Camel):
    """One target's status. Where a block withholds it, nothing of it is told: one entry with
    no address, care giver or category stands for every blocked target, after the others."""

    logical_address: str | None
    data_controller: str | None
    category: str | None
    status: Status
    cause: str | None
    http_status: int | None = None
    record_count: int = 0
    duration_ms: float = 0.0


class RecordOut(_Camel):
    category: str
    logical_address: str
    document_id: str
    source_system: str
    time: str
    document: dict[str, Any]


class OverviewOut(_Camel):
    outcome: str
    basis: str
    reason_code: str | None
    blocked_information_exists: bool
    protected_identity: bool
    protected_fields: list[str]
    categories: list[str]
    producers_called: int
    producers: list[ProducerOut]
    records: list[RecordOut]
    trace_id: str
    access_event_id: str


class CategoryOut(_Camel):
    number: int
    key: str
    name_en: str
    name_sv: str
    available: bool  # categories 12-17 are "coming" in the seed (treated like the rest)


# What the reader is told of every target a block withholds (or all of whose records it does):
# only that blocked information exists, never where nor of which kind (design.md §5.5).
BLOCKED_ENTRY: dict[str, Any] = {
    "logicalAddress": None, "dataController": None, "category": None,
    "status": Status.WITHHELD_BY_DECISION.value, "cause": BLOCKED, "httpStatus": None,
    "recordCount": 0, "durationMs": 0.0}


def producer_json(result: TargetResult) -> dict[str, Any]:
    """``ProducerOut`` as JSON (by alias), built directly: the answer is serialised once,
    without building and validating a model per producer first."""
    return BLOCKED_ENTRY if hidden_by_block(result) else _told_json(result)


def _told_json(result: TargetResult) -> dict[str, Any]:
    target = result.target
    return {"logicalAddress": target.logical_address, "dataController": target.data_controller,
            "category": target.category, "status": result.status.value, "cause": result.cause,
            "httpStatus": result.http_status, "recordCount": len(result.records),
            "durationMs": float(result.duration_ms)}


def told_json(told: Told) -> list[dict[str, Any]]:
    """The reader's list of targets: each one told, and the blocked ones as one entry, last."""
    listed = [_told_json(r) for r in told.results]
    return [*listed, BLOCKED_ENTRY] if told.blocked else listed


def producers_json(results: Iterable[TargetResult]) -> list[dict[str, Any]]:
    return told_json(told_of(results))


def record_json(record: Record) -> dict[str, Any]:
    """``RecordOut`` as JSON (by alias); the document as the producer sent it."""
    return {"category": record.category, "logicalAddress": record.logical_address,
            "documentId": record.document_id, "sourceSystem": record.source_system,
            "time": record.author_time, "document": record.document}


@dataclass
class QueryContext:
    """The use cases the routes call, built once by main.create_app's lifespan."""

    overviews: OverviewService
    push: PushService


def context(request: Request) -> QueryContext:
    found: QueryContext | None = getattr(request.app.state, "query", None)
    if found is None:
        raise Problem(503, "service.starting", "The query service is not ready.")
    return found


def reading_of(body: OverviewRequest, request: Request, claims: Any) -> Reading:
    try:
        patient = PatientId.parse(body.patient_id)
    except ValueError:
        raise Problem(422, "patient_id.invalid", "Not a valid personal identity number.") from None
    return Reading(claims, bearer_of(request), patient.value, body.categories)


def bearer_of(request: Request) -> str:
    """The reader's own token, which the consent service decides for."""
    return request.headers.get("authorization", "").removeprefix("Bearer ").strip()


def problem(refused: Refused) -> Problem:
    """The refusal as problem details: 403 when denied, else 503."""
    if isinstance(refused, AccessDenied):
        return Problem(403, refused.code, refused.detail, extensions={
            "reasonCode": refused.reason_code,
            "blockedInformationExists": refused.blocked_information_exists,
            "producers": told_json(refused.producers)})
    return Problem(403 if isinstance(refused, Denied) else 503, refused.code, refused.detail)


async def overview(body: OverviewRequest, request: Request, claims: ClinicianClaims) -> Response:
    """The patient's overview for the asked categories, after the access event is written.

    The answer is built as JSON-ready values and serialised here, once, rather than building
    the models and having FastAPI validate them again.
    """
    try:
        found = await context(request).overviews.overview(reading_of(body, request, claims))
    except Refused as refused:
        raise problem(refused) from None
    answer = {  # OverviewOut by alias (test_the_answer_matches_its_schema)
        "outcome": found.outcome.value, "basis": found.basis, "reasonCode": found.reason_code,
        "blockedInformationExists": found.blocked_information_exists,
        "protectedIdentity": found.protected_identity,
        "protectedFields": list(found.protected_fields),
        "categories": found.reading.categories, "producersCalled": found.producers_called,
        "producers": told_json(found.producers),
        "records": [record_json(r) for r in found.records],
        "traceId": current_trace_id(), "accessEventId": found.access_event_id,
    }
    return Response(to_json(answer), media_type="application/json")


# The hot route: FastAPI's schema and refusals, a lean handler for the ordinary request.
router.add_api_route("/overview", overview, methods=["POST"], response_model=OverviewOut,
                     route_class_override=LeanClinicianRoute)


@router.post("/overview/stream", responses={200: {"content": {SSE: {}}}})
async def overview_stream(body: OverviewRequest, request: Request,
                          claims: ClinicianClaims) -> StreamingResponse:
    """Server-sent events: ``accepted``, one ``producer`` per answer as it comes, ``summary``."""
    try:
        stream = await context(request).overviews.overview_stream(
            reading_of(body, request, claims))
    except Refused as refused:
        raise problem(refused) from None
    return StreamingResponse(_events(stream), media_type=SSE,
                             headers={"Cache-Control": "no-store"})


async def _events(stream: OverviewStream) -> AsyncIterator[str]:
    yield sse("accepted", {"accessEventId": stream.access_event_id,
                           "producersCalled": stream.producers_called,
                           "blockedInformationExists": stream.blocked_information_exists,
                           "protectedIdentity": stream.protected_identity,
                           "producers": told_json(stream.producers)})
    async for answer in stream.answers():
        told = BLOCKED_ENTRY if answer.result is None else producer_json(answer.result)
        yield sse("producer", {"producer": told,
                               "records": [record_json(r) for r in answer.records]})
    summary = stream.summary()
    yield sse("summary", {
        "outcome": summary.outcome.value, "reasonCode": summary.reason_code,
        "blockedInformationExists": summary.blocked_information_exists,
        "producers": told_json(summary.producers),
        "order": [list(identity) for identity in summary.order],
    })


def sse(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@push_router.post("/subscriptions", responses={200: {"content": {SSE: {}}}})
async def subscribe(body: SubscribeRequest, request: Request,
                    claims: ClinicianClaims) -> StreamingResponse:
    """Server-sent ``change`` events about new information for the patient, for this reader."""
    push = context(request).push
    try:
        subscription = await push.subscribe(reading_of(body, request, claims), float(claims.exp))
    except Refused as refused:
        raise problem(refused) from None
    return StreamingResponse(_notices(push, subscription), media_type=SSE,
                             headers={"Cache-Control": "no-store"})


async def _notices(push: PushService, subscription: Subscription) -> AsyncIterator[str]:
    try:
        yield sse("subscribed", {"categories": subscription.categories})
        async for notice in push.notices(subscription, KEEP_ALIVE_S):
            yield ": keep-alive\n\n" if notice is None else sse("change", _notice_json(notice))
        yield sse("expired", {})
    finally:
        push.close(subscription)


def _notice_json(notice: Notice) -> dict[str, Any]:
    return {"change": notice.change, "category": notice.category,
            "logicalAddress": notice.logical_address, "dataController": notice.data_controller,
            "mostRecentContent": notice.most_recent_content, "eventId": notice.event_id}


_CATEGORIES = [CategoryOut(number=c.number, key=c.key, name_en=c.name_en, name_sv=c.name_sv,
                           available=c.available) for c in CATEGORIES]


@router.get("/categories", response_model_by_alias=True)
async def categories(claims: ClinicianClaims) -> list[CategoryOut]:
    """Every information category, in number order (the clinician's page builds its choice
    from this list, so the page never repeats the table)."""
    return _CATEGORIES
