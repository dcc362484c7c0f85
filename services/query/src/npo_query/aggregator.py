"""The overview use case: index lookup → access decision → routing → producers in parallel →
the access law per record.

``plan`` decides whom to call (and settles every target that will not be called, with its
status); ``collect`` calls them all and waits, ``stream`` yields each answer as it arrives.
Every answer passes the decision's record policy (record_law) in ``_call``, the one place
between the producers and the merge, so every front end gets only what the law releases.
Auditing and the answer are the front ends' job (see api.py), so that the access event is
always written before anything leaves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from opentelemetry import trace

from npo_platform.categories import by_key
from npo_platform.identity import Claims

from .clients import ConsentClient, IndexClient, Unavailable
from .decision import Decision, DecisionCache, cache_key, unavailable
from .domain import IndexEntry, Target, TargetResult, not_routed, targets_of, withheld
from .producers import ProducerClient
from .record_law import SOCIAL_SERVICES, apply_law
from .routing import RoutingTable

tracer = trace.get_tracer(__name__)
DECISION_UNAVAILABLE = "decision_unavailable"


@dataclass(frozen=True)
class Reading:
    """One reader asking for one patient's categories."""

    claims: Claims
    bearer: str
    patient_id: str
    categories: list[str]


@dataclass
class Plan:
    reading: Reading
    decision: Decision
    calls: list[tuple[Target, str]] = field(default_factory=list)  # target, endpoint
    settled: list[TargetResult] = field(default_factory=list)  # withheld or not routed
    # Social-services addresses: never called, never shown to the reader, in the access event.
    hidden: list[TargetResult] = field(default_factory=list)

    @property
    def called(self) -> list[Target]:
        return [target for target, _ in self.calls]


@dataclass(frozen=True)
class Timeouts:
    producer_s: float
    overall_s: float


class Aggregator:
    def __init__(self, index: IndexClient, consent: ConsentClient, producers: ProducerClient,
                 routing: Callable[[], Awaitable[RoutingTable]], cache: DecisionCache,
                 consumer_system: str, timeouts: Timeouts) -> None:
        self._index, self._consent, self._producers = index, consent, producers
        self._routing, self._cache = routing, cache
        self._consumer, self._timeouts = consumer_system, timeouts

    async def plan(self, reading: Reading) -> Plan:
        """Whom to call; raises Unavailable when the index cannot answer."""
        entries = await self._lookup(reading)
        table = await self._routing()
        social, targets = _partition(targets_of(entries, reading.categories), table)
        decision = await self._decide(reading, targets)
        plan = Plan(reading, decision, hidden=withheld((t, SOCIAL_SERVICES) for t in social))
        if decision.denied:
            plan.settled = withheld((t, _reason(decision, t)) for t in targets)
            return plan
        for target in targets:
            verdict = decision.allows(target)
            endpoint = table.endpoint(self._consumer, target.logical_address, target.category)
            if not verdict.allowed:
                plan.settled += withheld([(target, verdict.reason_code or "withheld")])
            elif endpoint is None:
                plan.settled += not_routed([target])
            else:
                plan.calls.append((target, endpoint))
        return plan

    async def _lookup(self, reading: Reading) -> list[IndexEntry]:
        domains = sorted({by_key(key).service_domain for key in reading.categories})
        with tracer.start_as_current_span("index lookup", attributes={"npo.domains": len(domains)}):
            return await self._index.find(reading.patient_id, domains)

    async def _decide(self, reading: Reading, targets: list[Target]) -> Decision:
        claims = reading.claims
        reader = (claims.sub, claims.care_unit or "", claims.care_giver or "",
                  claims.purpose or "", claims.assignment or "")
        key = cache_key(reader, reading.patient_id, reading.categories, targets)
        with tracer.start_as_current_span("decision") as span:
            cached = self._cache.get(key)
            span.set_attribute("npo.cached", cached is not None)
            if cached is not None:
                return cached
            generation = self._cache.generation(reading.patient_id)
            try:
                decision = await self._consent.decide(
                    reading.bearer, reading.patient_id, reading.categories, targets
                )
            except Unavailable as error:
                span.set_attribute("npo.error", error.code)
                return unavailable(DECISION_UNAVAILABLE)  # fail closed
            span.set_attribute("npo.outcome", decision.outcome)
            self._cache.put(key, reading.patient_id, generation, decision)
            return decision

    def _tasks(self, plan: Plan) -> list[asyncio.Task[TargetResult]]:
        deadline = time.monotonic() + self._timeouts.overall_s
        return [
            asyncio.create_task(self._call(plan, target, endpoint, deadline))
            for target, endpoint in plan.calls
        ]

    async def _call(self, plan: Plan, target: Target, endpoint: str,
                    deadline: float) -> TargetResult:
        """One producer's answer, with only what the access law releases of it."""
        budget = max(0.0, min(self._timeouts.producer_s, deadline - time.monotonic()))
        result = await self._producers.fetch(endpoint, target, plan.reading.patient_id, budget)
        decision = plan.decision
        return apply_law(decision.policy, result, decision.protected_fields)

    async def collect(self, plan: Plan) -> list[TargetResult]:
        """Every called target's result (each bounded by its budget and the deadline)."""
        return list(await asyncio.gather(*self._tasks(plan)))

    async def stream(self, plan: Plan) -> AsyncIterator[TargetResult]:
        """Results in the order producers answer; pending calls are cancelled if abandoned."""
        tasks = self._tasks(plan)
        try:
            for next_done in asyncio.as_completed(tasks):
                yield await next_done
        finally:
            for task in tasks:
                task.cancel()


def _partition(targets: list[Target], table: RoutingTable) -> tuple[list[Target], list[Target]]:
    """(social-services targets, the others): the first are never asked about nor called."""
    social = [t for t in targets if t.logical_address in table.social_services]
    return social, [t for t in targets if t.logical_address not in table.social_services]


def _reason(decision: Decision, target: Target) -> str:
    verdict = decision.verdicts.get(target.id)
    return (verdict.reason_code if verdict else None) or decision.reason_code or "denied"


def results_in_order(plan: Plan, called: Sequence[TargetResult]) -> list[TargetResult]:
    """Every target's result, sorted by producer and category (stable for readers and tests)."""
    return sorted([*called, *plan.settled], key=lambda r: r.target)
