"""HTTP: the overview as JSON and as server-sent events. Every route audits before it answers.

JSON: plan → call producers → write the access event (acks=all) → answer. Streamed: plan →
write the access event of the attempt (what is withheld, what will be read from where) →
only then open the stream. Either way a 503 with no data when the event cannot be written.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from npo_platform.identifiers import PatientId
from npo_platform.identity import ClinicianClaims
from npo_platform.problems import Problem
from npo_platform.telemetry import current_trace_id

from .aggregator import DECISION_UNAVAILABLE, Aggregator, Plan, Reading, results_in_order
from .audit import Attempt, Auditor, AuditUnavailable
from .clients import Unavailable
from .decision import Decision, unavailable
from .domain import Outcome, Status, TargetResult, merge, outcome_of
from .schemas import OverviewOut, OverviewRequest, producer_out, record_out

router = APIRouter(prefix="/v1", tags=["overview"])
SSE = "text/event-stream"


@dataclass
class QueryContext:
    """What the routes need, built once by main.create_app's lifespan."""

    aggregator: Aggregator
    auditor: Auditor
    consumer_system: str


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
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    return Reading(claims, bearer, patient.value, body.categories)


@router.post("/overview", response_model=OverviewOut)
async def overview(body: OverviewRequest, request: Request, claims: ClinicianClaims) -> Response:
    """The patient's overview for the asked categories, after the access event is written.

    The answer is serialised here, once (FastAPI would validate the whole model again first).
    """
    ctx = context(request)
    plan = await plan_or_refuse(ctx, reading_of(body, request, claims))
    ordered = results_in_order(plan, await ctx.aggregator.collect(plan))
    outcome = outcome_of(False, ordered)
    event_id = await record(ctx, plan.reading, plan.decision, outcome, reason_of(plan, ordered),
                            ordered)
    answer = OverviewOut(
        outcome=outcome.value, basis=plan.decision.basis, reason_code=reason_of(plan, ordered),
        blocked_information_exists=plan.decision.blocked_information_exists,
        protected_identity=plan.decision.protected_identity,
        protected_fields=list(plan.decision.protected_fields),
        categories=plan.reading.categories, producers_called=len(plan.calls),
        producers=[producer_out(r) for r in ordered],
        records=[record_out(r) for r in merge(ordered)],
        trace_id=current_trace_id(), access_event_id=event_id,
    )
    return Response(answer.model_dump_json(by_alias=True), media_type="application/json")


@router.post("/overview/stream", responses={200: {"content": {SSE: {}}}})
async def overview_stream(body: OverviewRequest, request: Request,
                          claims: ClinicianClaims) -> StreamingResponse:
    """Server-sent events: ``accepted``, one ``producer`` per answer as it comes, ``summary``."""
    ctx = context(request)
    plan = await plan_or_refuse(ctx, reading_of(body, request, claims))
    outcome = Outcome.PARTIAL if plan.settled else Outcome.ALLOWED
    event_id = await record(ctx, plan.reading, plan.decision, outcome,
                            reason_of(plan, plan.settled), plan.settled, requested=True, plan=plan)
    return StreamingResponse(_events(ctx, plan, event_id), media_type=SSE,
                             headers={"Cache-Control": "no-store"})


async def _events(ctx: QueryContext, plan: Plan, event_id: str) -> AsyncIterator[str]:
    decision = plan.decision
    yield sse("accepted", {"accessEventId": event_id, "producersCalled": len(plan.calls),
                           "blockedInformationExists": decision.blocked_information_exists,
                           "protectedIdentity": decision.protected_identity,
                           "producers": [_dump(producer_out(r)) for r in plan.settled]})
    seen: set[tuple[str, str]] = set()
    called: list[TargetResult] = []
    async for result in ctx.aggregator.stream(plan):
        called.append(result)
        fresh = [r for r in result.records if r.identity not in seen]
        seen.update(r.identity for r in fresh)
        yield sse("producer", {"producer": _dump(producer_out(result)),
                               "records": [_dump(record_out(r)) for r in fresh]})
    ordered = results_in_order(plan, called)
    yield sse("summary", {
        "outcome": outcome_of(False, ordered).value, "reasonCode": reason_of(plan, ordered),
        "producers": [_dump(producer_out(r)) for r in ordered],
        "order": [[r.document_id, r.source_system] for r in merge(ordered)],
    })


def sse(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True)


async def plan_or_refuse(ctx: QueryContext, reading: Reading) -> Plan:
    """The plan, or (after auditing the refused attempt) a problem: 503 or 403."""
    try:
        plan = await ctx.aggregator.plan(reading)
    except Unavailable as error:
        await record(ctx, reading, unavailable(error.code), Outcome.DENIED, error.code, [])
        raise Problem(503, error.code, "The engagement index could not be asked.") from None
    decision = plan.decision
    if not decision.denied:
        return plan
    reason = decision.reason_code or "denied"
    await record(ctx, reading, decision, Outcome.DENIED, reason, plan.settled)
    if reason == DECISION_UNAVAILABLE:
        raise Problem(503, "decision.unavailable", "No access decision could be had.")
    raise Problem(403, "access.denied", "Access to this patient's information is denied.",
                  extensions={"reasonCode": reason,
                              "blockedInformationExists": decision.blocked_information_exists,
                              "producers": [_dump(producer_out(r)) for r in plan.settled]})


def reason_of(plan: Plan, results: Sequence[TargetResult]) -> str | None:
    """The most telling reason why not everything was returned, or None."""
    statuses = {r.status for r in results}
    if Status.WITHHELD_BY_DECISION in statuses:
        return plan.decision.reason_code or next(
            r.cause for r in results if r.status is Status.WITHHELD_BY_DECISION
        )
    if Status.NOT_AUTHORISED_BY_ROUTING in statuses:
        return "not_in_routing"
    return "producer_failed" if Status.NO_DATA_SYNCH_FAILED in statuses else None


async def record(ctx: QueryContext, reading: Reading, decision: Decision, outcome: Outcome,
                 reason: str | None, results: Sequence[TargetResult], *,
                 requested: bool = False, plan: Plan | None = None) -> str:
    attempt = Attempt(reading.claims, ctx.consumer_system, reading.patient_id,
                      reading.categories, decision, outcome, reason, results,
                      plan.called if requested and plan else ())
    try:
        return await ctx.auditor.record(attempt)
    except AuditUnavailable:
        raise Problem(503, "audit.unavailable",
                      "The access could not be logged, so no information is returned.") from None
