"""The overview use case, knowing no protocol: plan → collect → filter → audit → result; and
the routing table's use cases (the snapshot overviews read, its administration).

Every front end (JSON and server-sent events in api.py; RIV-TA and FHIR in their own modules)
parses its request into a ``Reading``, calls ``OverviewService.overview`` (or
``overview_stream``) and renders what comes back. A refusal is a ``Refused`` exception, raised
only after the attempt's access event is written (or could not be: ``audit.unavailable``), which
each front end maps to its protocol (problem details, a SOAP fault, an OperationOutcome).

- **plan**: index lookup (one FindContent over the service domains asked) → access decision
  (cached, fail closed) → routing. Every target that will not be called is settled here with
  its status; social-services addresses are never asked about, called nor told.
- **collect**: the called targets in parallel, each bounded by its budget and the deadline.
- **filter**: the decision's record policy on every answer (``domain.apply_law``), the one
  place between the producers and the merge.
- **audit**: the access event (acks=all, bounded wait) before anything is returned; the streamed
  variant writes the attempt's event before the stream opens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry import trace

from npo_platform.categories import by_key
from npo_platform.identity import Claims

from .access_events import Attempt, Auditor, AuditUnavailable
from .cache import DecisionCache, cache_key
from .clients import ConsentClient, IndexClient, Unavailable
from .domain import (
    DECISION_UNAVAILABLE,
    NO_RELATION,
    NOTHING_TOLD,
    SOCIAL_SERVICES,
    Decision,
    IndexEntry,
    Outcome,
    Record,
    Target,
    TargetResult,
    Told,
    apply_law,
    blocked_information_exists,
    merge,
    not_routed,
    outcome_of_read,
    reason_of,
    targets_of,
    told_of,
    unavailable,
    withheld,
)
from .producers import ProducerClient
from .routing import (
    STRICT,
    Authorisation,
    EndpointPolicy,
    Route,
    RoutingTable,
    check_authorisation,
    check_route,
    parse_file,
)
from .store import RoutingStore

tracer = trace.get_tracer(__name__)


@dataclass(frozen=True)
class Reading:
    """One reader asking for one patient's categories (keys, at least one). A call through the
    national platform also names the reader's record system and the platform's correlation id
    (both go into the access event)."""

    claims: Claims
    bearer: str  # the reader's own token, for the consent service
    patient_id: str
    categories: list[str]
    consumer_system: str = ""  # the reader's system, when it says; else the configured one
    correlation_id: str = ""


class Refused(Exception):
    """Nothing of the patient's information leaves; ``code`` is stable, ``detail`` for people."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code)
        self.code, self.detail = code, detail


class Denied(Refused):
    """The reader may not have it (HTTP 403)."""


class ServiceUnavailable(Refused):
    """It cannot be answered now: the access log, the index or the decision (HTTP 503)."""


class AccessDenied(Denied):
    """The access decision denies the read. ``producers`` is what the reader may be told of the
    withheld targets: nothing without a relation (inner secrecy), never where a block is."""

    def __init__(self, reason_code: str, blocked_information_exists: bool, producers: Told,
                 access_event_id: str) -> None:
        super().__init__("access.denied", "Access to this patient's information is denied.")
        self.reason_code = reason_code
        self.blocked_information_exists = blocked_information_exists
        self.producers, self.access_event_id = producers, access_event_id


AUDIT_UNAVAILABLE = "The access could not be logged, so no information is returned."
NO_DECISION = "No access decision could be had."


@dataclass(slots=True)  # built once per overview: not frozen, which costs per field
class Overview:
    """The result of one overview, everything a front end renders and nothing the reader may
    not be told. ``producers`` has a status per target (blocked ones only as ``blocked``)."""

    reading: Reading
    outcome: Outcome
    basis: str
    reason_code: str | None
    blocked_information_exists: bool
    protected_identity: bool
    protected_fields: tuple[str, ...]
    producers_called: int
    producers: Told
    records: list[Record]  # merged: newest first, one copy per documentId and source system
    access_event_id: str


@dataclass(frozen=True)
class StreamedAnswer:
    """One producer's answer as it arrives: its result (None when a block hides it; the reader
    learns only that blocked information exists) and its records not streamed before."""

    result: TargetResult | None
    records: tuple[Record, ...]


@dataclass(frozen=True)
class StreamSummary:
    """After the last answer: what the whole read came to."""

    outcome: Outcome
    reason_code: str | None
    blocked_information_exists: bool
    producers: Told
    order: list[tuple[str, str]]  # (documentId, source system) of the merged records, in order


@dataclass(frozen=True)
class Timeouts:
    producer_s: float
    overall_s: float


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

    def in_order(self, called: Sequence[TargetResult]) -> list[TargetResult]:
        """Every target's result, sorted by producer and category (stable for readers)."""
        return sorted([*called, *self.settled], key=lambda r: r.target)


class OverviewService:
    """The overview use case and its streamed variant."""

    def __init__(self, index: IndexClient, consent: ConsentClient, producers: ProducerClient,
                 routing: Callable[[], Awaitable[RoutingTable]], cache: DecisionCache,
                 auditor: Auditor, consumer_system: str, timeouts: Timeouts) -> None:
        self._index, self._consent, self._producers = index, consent, producers
        self._routing, self._cache, self._auditor = routing, cache, auditor
        self._consumer, self._timeouts = consumer_system, timeouts

    async def overview(self, reading: Reading) -> Overview:
        """The reading's overview, returned only once its access event is written."""
        plan = await self._plan_or_refuse(reading)
        ordered = plan.in_order(await asyncio.gather(*self._calls(plan)))
        outcome, reason = outcome_of_read(ordered), reason_of(plan.decision, ordered)
        event_id = await self._audit(reading, plan.decision, outcome, reason, ordered, plan)
        decision = plan.decision
        return Overview(reading, outcome, decision.basis, reason,
                        blocked_information_exists(decision, ordered), decision.protected_identity,
                        decision.protected_fields, len(plan.calls), told_of(ordered),
                        merge(ordered), event_id)

    async def overview_stream(self, reading: Reading) -> OverviewStream:
        """The same read, each answer as it arrives; the attempt's access event (what is
        withheld, what will be read from where) is written before the stream opens."""
        plan = await self._plan_or_refuse(reading)
        outcome = Outcome.PARTIAL if plan.settled else Outcome.ALLOWED
        reason = reason_of(plan.decision, plan.settled)
        event_id = await self._audit(reading, plan.decision, outcome, reason, plan.settled, plan,
                                     requested=True)
        return OverviewStream(plan, event_id, lambda: self._calls(plan))

    async def _plan_or_refuse(self, reading: Reading) -> Plan:
        """The plan, or (after auditing the refused attempt) ServiceUnavailable or AccessDenied."""
        try:
            plan = await self._plan(reading)
        except Unavailable as error:
            await self._audit(reading, unavailable(error.code), Outcome.DENIED, error.code, [])
            raise ServiceUnavailable(error.code, "The engagement index could not be asked.") from None
        decision = plan.decision
        if not decision.denied:
            return plan
        reason = decision.reason_code or "denied"
        event_id = await self._audit(reading, decision, Outcome.DENIED, reason, plan.settled, plan)
        if reason == DECISION_UNAVAILABLE:
            raise ServiceUnavailable("decision.unavailable", NO_DECISION)
        # Without a relation (inner secrecy) the reader learns nothing of where the patient's
        # information is, not even which producers were withheld.
        told = NOTHING_TOLD if reason == NO_RELATION else told_of(plan.settled)
        raise AccessDenied(reason, decision.blocked_information_exists, told, event_id)

    async def _plan(self, reading: Reading) -> Plan:
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

    def _calls(self, plan: Plan) -> list[asyncio.Task[TargetResult]]:
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

    async def _audit(self, reading: Reading, decision: Decision, outcome: Outcome,
                     reason: str | None, results: Sequence[TargetResult],
                     plan: Plan | None = None, *, requested: bool = False) -> str:
        """Write the attempt's access event (with the plan's social-services targets, which the
        reader is never told of); its id, or ServiceUnavailable: no data may leave."""
        hidden = plan.hidden if plan else []
        attempt = Attempt(reading.claims, reading.consumer_system or self._consumer,
                          reading.patient_id, reading.categories, decision, outcome, reason,
                          [*results, *hidden], plan.called if requested and plan else (),
                          reading.correlation_id)
        try:
            return await self._auditor.record(attempt)
        except AuditUnavailable:
            raise ServiceUnavailable("audit.unavailable", AUDIT_UNAVAILABLE) from None


class OverviewStream:
    """A streamed overview whose access event is written: what is known before the first
    answer, then ``answers()`` as they arrive, then ``summary()``."""

    def __init__(self, plan: Plan, access_event_id: str,
                 calls: Callable[[], list[asyncio.Task[TargetResult]]]) -> None:
        decision = plan.decision
        self.access_event_id = access_event_id
        self.producers_called = len(plan.calls)
        self.blocked_information_exists = decision.blocked_information_exists
        self.protected_identity = decision.protected_identity
        self.producers = told_of(plan.settled)  # the targets settled without a call
        self._plan, self._calls = plan, calls
        self._answered: list[TargetResult] = []

    async def answers(self) -> AsyncIterator[StreamedAnswer]:
        """Answers in the order producers give them; pending calls are cancelled if abandoned."""
        seen: set[tuple[str, str]] = set()
        calls = self._calls()  # the producers are called once the stream is read
        try:
            for next_done in asyncio.as_completed(calls):
                result = await next_done
                self._answered.append(result)
                fresh = tuple(r for r in result.records if r.identity not in seen)
                seen.update(r.identity for r in fresh)
                told = told_of([result])
                yield StreamedAnswer(told.results[0] if told.results else None, fresh)
        finally:
            for call in calls:
                call.cancel()

    def summary(self) -> StreamSummary:
        """What the answers so far came to (all of them, once ``answers()`` has ended)."""
        ordered = self._plan.in_order(self._answered)
        decision = self._plan.decision
        return StreamSummary(outcome_of_read(ordered), reason_of(decision, ordered),
                             blocked_information_exists(decision, ordered), told_of(ordered),
                             [r.identity for r in merge(ordered)])


def _partition(targets: list[Target], table: RoutingTable) -> tuple[list[Target], list[Target]]:
    """(social-services targets, the others): the first are never asked about nor called."""
    social = [t for t in targets if t.logical_address in table.social_services]
    return social, [t for t in targets if t.logical_address not in table.social_services]


def _reason(decision: Decision, target: Target) -> str:
    verdict = decision.verdicts.get(target.id)
    return (verdict.reason_code if verdict else None) or decision.reason_code or "denied"


class RoutingService:
    """The routing table: the snapshot every overview reads (reloaded from the store when older
    than ``refresh_s``, at once after a change made through this replica), and its changes.
    Overviews never wait on the database."""

    def __init__(self, store: RoutingStore, refresh_s: float = 5.0,
                 policy: EndpointPolicy = STRICT) -> None:
        self._store = store
        self._policy = policy  # where routes may point (routing.check_endpoint)
        self._refresh = refresh_s
        self._table: RoutingTable | None = None
        self._loaded = 0.0

    async def table(self) -> RoutingTable:
        if self._table is None or time.monotonic() - self._loaded > self._refresh:
            self._table = await self._store.table()
            self._loaded = time.monotonic()
        return self._table

    async def current(self) -> RoutingTable:
        """The table as stored now (for its administrators), not the snapshot."""
        return await self._store.table()

    async def put_routes(self, routes: Iterable[Route]) -> None:
        """Store every route, or none when one is invalid (InvalidRouting)."""
        await self._store.put_routes([check_route(r, self._policy) for r in routes])
        self._table = None

    async def delete_route(self, logical_address: str) -> bool:
        found = await self._store.delete_route(logical_address)
        self._table = None if found else self._table
        return found

    async def put_authorisations(self, authorisations: Iterable[Authorisation]) -> None:
        """Store every authorisation, or none when one is invalid (InvalidRouting)."""
        await self._store.put_authorisations([check_authorisation(a) for a in authorisations])
        self._table = None

    async def delete_authorisation(self, authorisation: Authorisation) -> bool:
        found = await self._store.delete_authorisation(authorisation)
        self._table = None if found else self._table
        return found

    async def load_file(self, path: Path) -> tuple[int, int]:
        routes, authorisations = parse_file(path, self._policy)
        await self._store.put_routes(routes)
        await self._store.put_authorisations(authorisations)
        self._table = None
        return len(routes), len(authorisations)
