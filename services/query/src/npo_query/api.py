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
from pydantic_core import to_json

from npo_platform.identifiers import PatientId
from npo_platform.identity import ClinicianClaims
from npo_platform.problems import Problem
from npo_platform.telemetry import current_trace_id

from .aggregator import DECISION_UNAVAILABLE, Aggregator, Plan, Reading, results_in_order
from .audit import Attempt, Auditor, AuditUnavailable
from .clients import Unavailable
from .decision import Decision, unavailable
from .domain import Outcome, Status, TargetResult, merge, outcome_of
from .lean_route import LeanClinicianRoute
from .record_law import BLOCK_REASONS, BLOCKED, SOCIAL_SERVICES, record_reasons, withheld_by_block
from .schemas import OverviewOut, OverviewRequest, producer_json, producers_json, record_json

router = APIRouter(prefix="/v1", tags=["overview"])
SSE = "text/event-stream"
NO_RELATION = "no_relation"


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


async def overview(body: OverviewRequest, request: Request, claims: ClinicianClaims) -> Response:
    """The patient's overview for the asked categories, after the access event is written.

    The answer is built as JSON-ready values and serialised here, once (building the models
    and FastAPI's validating them again cost ~0.1 ms per query).
    """
    ctx = context(request)
    plan = await plan_or_refuse(ctx, reading_of(body, request, claims))
    ordered = results_in_order(plan, await ctx.aggregator.collect(plan))
    outcome, reason = outcome_of_read(ordered), reason_of(plan, ordered)
    event_id = await record(ctx, plan.reading, plan.decision, outcome, reason, ordered, plan=plan)
    decision = plan.decision
    answer = {  # OverviewOut by alias (test_the_answer_matches_its_schema)
        "outcome": outcome.value, "basis": decision.basis, "reasonCode": reason,
        "blockedInformationExists": blocked_information_exists(plan, ordered),
        "protectedIdentity": decision.protected_identity,
        "protectedFields": list(decision.protected_fields),
        "categories": plan.reading.categories, "producersCalled": len(plan.calls),
        "producers": producers_json(ordered),
        "records": [record_json(r) for r in merge(ordered)],
        "traceId": current_trace_id(), "accessEventId": event_id,
    }
    return Response(to_json(answer), media_type="application/json")


# The hot route: FastAPI's schema and refusals, a lean handler for the ordinary request.
router.add_api_route("/overview", overview, methods=["POST"], response_model=OverviewOut,
                     route_class_override=LeanClinicianRoute)


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
                           "producers": producers_json(plan.settled)})
    seen: set[tuple[str, str]] = set()
    called: list[TargetResult] = []
    async for result in ctx.aggregator.stream(plan):
        called.append(result)
        fresh = [r for r in result.records if r.identity not in seen]
        seen.update(r.identity for r in fresh)
        yield sse("producer", {"producer": producer_json(result),
                               "records": [record_json(r) for r in fresh]})
    ordered = results_in_order(plan, called)
    yield sse("summary", {
        "outcome": outcome_of_read(ordered).value, "reasonCode": reason_of(plan, ordered),
        "blockedInformationExists": blocked_information_exists(plan, ordered),
        "producers": producers_json(ordered),
        "order": [[r.document_id, r.source_system] for r in merge(ordered)],
    })


def sse(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


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
    await record(ctx, reading, decision, Outcome.DENIED, reason, plan.settled, plan=plan)
    if reason == DECISION_UNAVAILABLE:
        raise Problem(503, "decision.unavailable", "No access decision could be had.")
    # Without a relation (inner secrecy) the reader learns nothing of where the patient's
    # information is, not even which producers were withheld.
    told = [] if reason == NO_RELATION else producers_json(plan.settled)
    raise Problem(403, "access.denied", "Access to this patient's information is denied.",
                  extensions={"reasonCode": reason,
                              "blockedInformationExists": decision.blocked_information_exists,
                              "producers": told})


def outcome_of_read(results: Sequence[TargetResult]) -> Outcome:
    """Partial also when the law withheld some records (social-services ones aside: the reader
    is never told of those)."""
    outcome = outcome_of(False, results)
    if outcome is Outcome.ALLOWED and record_reasons(results) - {SOCIAL_SERVICES}:
        return Outcome.PARTIAL
    return outcome


def blocked_information_exists(plan: Plan, results: Sequence[TargetResult]) -> bool:
    return plan.decision.blocked_information_exists or any(withheld_by_block(r) for r in results)


def reason_of(plan: Plan, results: Sequence[TargetResult]) -> str | None:
    """The most telling reason why not everything was returned, or None."""
    statuses = {r.status for r in results}
    if Status.WITHHELD_BY_DECISION in statuses:
        return plan.decision.reason_code or next(
            r.cause for r in results if r.status is Status.WITHHELD_BY_DECISION
        )
    by_law = record_reasons(results) - {SOCIAL_SERVICES}
    if by_law:
        return BLOCKED if by_law & BLOCK_REASONS else min(by_law)
    if Status.NOT_AUTHORISED_BY_ROUTING in statuses:
        return "not_in_routing"
    return "producer_failed" if Status.NO_DATA_SYNCH_FAILED in statuses else None


async def record(ctx: QueryContext, reading: Reading, decision: Decision, outcome: Outcome,
                 reason: str | None, results: Sequence[TargetResult], *,
                 requested: bool = False, plan: Plan | None = None) -> str:
    """Write the attempt's access event (with the plan's social-services targets, which the
    reader is never told of), or answer 503 with no data."""
    hidden = plan.hidden if plan else []
    attempt = Attempt(reading.claims, ctx.consumer_system, reading.patient_id,
                      reading.categories, decision, outcome, reason, [*results, *hidden],
                      plan.called if requested and plan else ())
    try:
        return await ctx.auditor.record(attempt)
    except AuditUnavailable:
        raise Problem(503, "audit.unavailable",
                      "The access could not be logged, so no information is returned.") from None
