"""The access log: the AccessEvent of every attempt, written with acks=all before any data.

If the broker does not acknowledge within the configured bound, the overview is refused and
returns nothing (``AuditUnavailable``). The event may still be delivered later (the Kafka
client keeps it buffered and retries), so a correction follows it: an event with outcome
NOT_DELIVERED whose correlation id names it, and the log says the reader got no data.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message
from opentelemetry import trace

from npo_platform.contracts.events_pb2 import (
    ACCESS_BASIS_UNSPECIFIED,
    CONSENT,
    DATA_FROM_SOURCE,
    EMERGENCY,
    NO_BASIS,
    NO_DATA_SYNCH_FAILED,
    NOT_AUTHORISED_BY_ROUTING,
    NOT_DELIVERED,
    OWN_CARE_GIVER,
    READ,
    REQUESTED,
    WITHHELD_BY_DECISION,
    AccessEvent,
    Actor,
    ProducerResult,
    WithheldRecords,
)
from npo_platform.contracts.events_pb2 import ALLOWED as PB_ALLOWED
from npo_platform.contracts.events_pb2 import DENIED as PB_DENIED
from npo_platform.contracts.events_pb2 import PARTIAL as PB_PARTIAL
from npo_platform.events import new_meta
from npo_platform.identity import Claims
from npo_platform.kafka import messaging_attributes
from npo_platform.telemetry import current_trace_id
from npo_platform.topics import Topic

from .domain import SOCIAL_SERVICES, Decision, Outcome, Status, Target, TargetResult

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

_BASIS = {"own_care_giver": OWN_CARE_GIVER, "consent": CONSENT, "emergency": EMERGENCY,
          "none": NO_BASIS}
_OUTCOME = {Outcome.ALLOWED: PB_ALLOWED, Outcome.PARTIAL: PB_PARTIAL, Outcome.DENIED: PB_DENIED}
_STATUS = {Status.DATA_FROM_SOURCE: DATA_FROM_SOURCE,
           Status.NO_DATA_SYNCH_FAILED: NO_DATA_SYNCH_FAILED,
           Status.WITHHELD_BY_DECISION: WITHHELD_BY_DECISION,
           Status.NOT_AUTHORISED_BY_ROUTING: NOT_AUTHORISED_BY_ROUTING}
ROUTING_AGENT = "npo-query-routing"
CONSENT_AGENT = "npo-consent"


class Publisher(Protocol):
    async def publish(self, topic: Topic, key: str, event: Message) -> None: ...


class AuditUnavailable(Exception):
    """The access event could not be written: no data may leave."""


@dataclass(frozen=True)
class Attempt:
    """Everything an access event records about one read."""

    claims: Claims
    consumer_system: str
    patient_id: str
    categories: Sequence[str]
    decision: Decision
    outcome: Outcome
    reason_code: str | None
    results: Sequence[TargetResult]
    requested: Sequence[Target] = ()  # streamed reads: called, answers not known yet
    correlation_id: str = ""


def access_event(attempt: Attempt, source: str) -> AccessEvent:
    decision = attempt.decision
    return AccessEvent(
        meta=new_meta(source, correlation_id=attempt.correlation_id),
        actor=actor(attempt.claims, attempt.consumer_system),
        patient_id=attempt.patient_id,
        activity=READ,
        categories=list(attempt.categories),
        basis=_BASIS.get(decision.basis, ACCESS_BASIS_UNSPECIFIED),
        outcome=_OUTCOME[attempt.outcome],
        reason_code=attempt.reason_code or "",
        emergency_reason=decision.emergency_reason,
        blocked_information_exists=decision.blocked_information_exists,
        protected_identity=decision.protected_identity,
        producers=[_result(r) for r in attempt.results]
        + [_requested(t) for t in attempt.requested],
        trace_id=current_trace_id(),
        withheld_record_count=sum(w.count for r in attempt.results for w in r.withheld),
    )


def actor(claims: Claims, consumer_system: str) -> Actor:
    return Actor(
        user_hsa_id=claims.sub, name=claims.name, title=claims.title or "",
        assignment_id=claims.assignment or "", purpose=claims.purpose or "",
        care_unit_hsa_id=claims.care_unit or "", care_giver_hsa_id=claims.care_giver or "",
        roles=sorted(claims.roles), system_hsa_id=consumer_system,
    )


def _base(target: Target) -> ProducerResult:
    return ProducerResult(logical_address=target.logical_address,
                          source_system=target.source_system,
                          data_controller=target.data_controller, categories=[target.category])


def _result(result: TargetResult) -> ProducerResult:
    out = _base(result.target)
    out.status = _STATUS[result.status]
    out.cause_code = result.cause or ""
    out.causing_agent = _agent(result)
    out.http_status = result.http_status or 0
    out.record_count = len(result.records)
    out.duration_ms = round(result.duration_ms)
    out.social_services = result.cause == SOCIAL_SERVICES
    if result.withheld:
        out.withheld_records.extend(
            WithheldRecords(reason_code=w.reason, care_giver_hsa_id=w.care_giver,
                            care_unit_hsa_id=w.care_unit, record_count=w.count)
            for w in result.withheld)
    out.protected_fields_removed = result.protected_removed
    return out


def _agent(result: TargetResult) -> str:
    if result.status is Status.WITHHELD_BY_DECISION:
        return CONSENT_AGENT
    if result.status is Status.NOT_AUTHORISED_BY_ROUTING:
        return ROUTING_AGENT
    return result.target.logical_address if result.failed else ""


def _requested(target: Target) -> ProducerResult:
    out = _base(target)
    out.status = REQUESTED
    return out


class Auditor:
    """Publishes access events and waits, at most ``timeout_s``, for the broker's ack."""

    def __init__(self, publisher: Publisher, topic: Topic, source: str, timeout_s: float) -> None:
        self._publisher, self._topic = publisher, topic
        self._source, self._timeout = source, timeout_s
        self._corrections: set[asyncio.Task[None]] = set()
        # The span is the send's own (the publisher opens none inside it): its attributes.
        self._span_attributes = messaging_attributes(topic.name)

    async def record(self, attempt: Attempt) -> str:
        """Write the attempt's access event; its event id, or AuditUnavailable."""
        with tracer.start_as_current_span("access event", kind=trace.SpanKind.PRODUCER,
                                          attributes=self._span_attributes) as span:
            event = access_event(attempt, self._source)
            span.set_attribute("npo.outcome", attempt.outcome.value)
            try:
                async with asyncio.timeout(self._timeout):
                    await self._publisher.publish(self._topic, attempt.patient_id, event)
            except Exception as error:  # any failure to write means no data may leave
                log.error("access event not written: %s", type(error).__name__)
                span.set_status(trace.StatusCode.ERROR, "audit unavailable")
                self._correct(event, attempt.patient_id)
                raise AuditUnavailable from None
            return event.meta.event_id

    def _correct(self, event: AccessEvent, key: str) -> None:
        """Say, after ``event``, that its reader got no data (in the background: the broker is
        unavailable now; the client delivers both in order when it is back)."""
        correction = AccessEvent(
            meta=new_meta(self._source, correlation_id=event.meta.event_id), actor=event.actor,
            patient_id=event.patient_id, activity=event.activity, outcome=NOT_DELIVERED,
            reason_code="audit.unavailable", trace_id=event.trace_id)
        task = asyncio.create_task(self._publish_correction(correction, key))
        self._corrections.add(task)
        task.add_done_callback(self._corrections.discard)

    async def _publish_correction(self, correction: AccessEvent, key: str) -> None:
        try:
            await self._publisher.publish(self._topic, key, correction)
        except Exception as error:  # the original's fate is unknown too; the log says so
            log.error("access event correction not written: %s", type(error).__name__)
