"""Notifications out: the index's change stream as RIV-TA ProcessNotification calls to its
subscribers (an aggregating cache, another region's index).

Each subscriber has a consumer group of its own on the change topic (the platform's
``EventConsumer``: at-least-once, offsets committed after the call was answered), so a slow or
failing subscriber holds back only itself. Per handled batch, the changes its filters accept,
minus those it owns itself (never sent back to where they came from), go out in calls of at
most 1000 transactions. A failed call is retried with the platform's backoff; a SOAP fault is
the subscriber refusing and is not retried; either way the record ends in the change topic's
dead letter with the reason (and the subscriber's group). Subscribers may see a change twice
and order by ``updateTime``, as for the change stream itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import httpx
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from npo_platform.contracts import IndexChange, IndexChanges
from npo_platform.contracts.events_pb2 import Engagement, EngagementTransaction
from npo_platform.kafka import EventConsumer, EventPublisher, PermanentError, Received, RetryPolicy
from npo_producer import ChangeFilter
from npo_rivta import engagementindex as ei
from npo_rivta.contracts import PROCESS_NOTIFICATION
from npo_rivta.headers import logical_address_header
from npo_rivta.soap import CONTENT_TYPE, SoapFault, envelope, read_envelope, read_fault
from npo_rivta.xml import XmlRejected, parse

if TYPE_CHECKING:
    from .config import IndexSettings

log = logging.getLogger(__name__)
MAX_PER_CALL = 1000  # ProcessNotification's limit, as Update's


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True)


class SubscriberFilter(_Camel):
    service_domain: str = Field(min_length=1)
    categorizations: tuple[str, ...] = ()  # none: every categorization of the domain


class Subscriber(_Camel):
    """Who is notified: its logical address (the LogicalAddress header of every call), its
    endpoint, what it wants (no filters: everything) and the bearer token it gave us, if any."""

    logical_address: str = Field(min_length=1, max_length=64)
    endpoint: str = Field(min_length=1)
    filters: tuple[SubscriberFilter, ...] = ()
    token: str = ""



def transaction(change: IndexChange, own_address: str) -> EngagementTransaction:
    """A change as the contract's transaction: a delete, or the engagement as it now is; this
    index's own records named with its address as owner."""
    engagement = Engagement()
    engagement.CopyFrom(change.engagement)
    if engagement.owner in ("", "NA"):
        engagement.owner = own_address
    return EngagementTransaction(engagement=engagement,
                                 delete_flag=change.change == IndexChange.DELETED)


class Notifier:
    """The handler of one subscriber's consumer: a batch of change records in, calls out."""

    def __init__(self, subscriber: Subscriber, own_address: str, http: httpx.AsyncClient) -> None:
        self.subscriber, self._own, self._http = subscriber, own_address, http
        self._filters = [ChangeFilter.of(f.service_domain, f.categorizations)
                         for f in subscriber.filters]
        self.calls = 0
        self.sent = 0

    def wants(self, change: IndexChange) -> bool:
        if change.engagement.owner == self.subscriber.logical_address:
            return False  # it came from this subscriber: never sent back
        return not self._filters or any(f.matches(change) for f in self._filters)

    async def __call__(self, batch: Sequence[Received[IndexChanges]]) -> None:
        wanted = [transaction(c, self._own) for r in batch for c in r.event.changes
                  if self.wants(c)]
        for start in range(0, len(wanted), MAX_PER_CALL):
            await self.send(wanted[start:start + MAX_PER_CALL])

    async def send(self, transactions: Sequence[EngagementTransaction]) -> None:
        """One ProcessNotification call; PermanentError when the subscriber refuses it."""
        s = self.subscriber
        data = envelope(ei.transactions_request(PROCESS_NOTIFICATION, transactions),
                        [logical_address_header(s.logical_address)])
        headers = {"Content-Type": CONTENT_TYPE,
                   "SOAPAction": f'"{PROCESS_NOTIFICATION.soap_action}"'}
        if s.token:
            headers["Authorization"] = f"Bearer {s.token}"
        answer = await self._http.post(s.endpoint, content=data, headers=headers)
        result = _result(answer)
        if isinstance(result, SoapFault):
            raise PermanentError("notify.refused", f"{s.logical_address}: {result}")
        self.calls += 1
        self.sent += len(transactions)


def _result(answer: httpx.Response) -> SoapFault | None:
    """None for ResultCode OK; the subscriber's refusal as a fault; anything else raises (a
    transient failure, retried)."""
    try:
        env = read_envelope(parse(answer.content))
    except (XmlRejected, SoapFault):
        raise RuntimeError(f"no SOAP answer (HTTP {answer.status_code})") from None
    fault = read_fault(env)
    if fault is not None:
        return SoapFault(fault.code or fault.faultcode, fault.faultstring)
    code = ei.result_code(env.body, PROCESS_NOTIFICATION)
    if answer.status_code != 200 or code not in ("OK", "INFO"):
        raise RuntimeError(f"answer HTTP {answer.status_code}, ResultCode {code or 'missing'}")
    return None


def notifiers(settings: IndexSettings, publisher: EventPublisher,
              http: httpx.AsyncClient) -> list[EventConsumer[IndexChanges]]:
    """One consumer per configured subscriber, each in a group of its own."""
    return [_consumer(settings, s, publisher, http) for s in settings.riv_subscribers]


def _consumer(settings: IndexSettings, subscriber: Subscriber, publisher: EventPublisher,
              http: httpx.AsyncClient) -> EventConsumer[IndexChanges]:
    return EventConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{settings.consumer_group}-notify-{subscriber.logical_address}",
        topic=settings.changes, message_type=IndexChanges,
        handler=Notifier(subscriber, settings.riv_logical_address, http), publisher=publisher,
        max_batch=settings.riv_notify_batch,
        retry=RetryPolicy(attempts=settings.riv_notify_attempts, initial_backoff_s=0.5,
                          max_backoff_s=30.0),
    )


def described(subscribers: Iterable[Subscriber]) -> str:
    return ", ".join(f"{s.logical_address} at {s.endpoint}" for s in subscribers) or "none"
