"""The index's use cases behind every front end (JSON, RIV-TA SOAP): a producer's engagement
transactions, another index's notification, FindContent. No protocol here: each front end
parses, calls one of these, and renders the answer or the error its own way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from npo_engagement import Code, InvalidUpdate, Rules, Violation, transactions_of
from npo_platform.contracts import EngagementUpdate
from npo_platform.contracts.events_pb2 import Engagement, EngagementTransaction
from npo_platform.events import new_meta
from npo_platform.kafka import EventPublisher
from npo_platform.topics import Topic
from npo_producer import EngagementProducer, patient_key, split_per_patient

from .domain import Record
from .domain_access import Caller, check_lookup, check_publisher
from .store import FindQuery, IndexStore


async def publish_transactions(
    producer: EngagementProducer, rules: Rules, caller: Caller,
    transactions: Sequence[EngagementTransaction],
) -> list[str]:
    """A producer's transactions: validated as one request (InvalidUpdate with every code, each
    violation numbered by its place in the request), the producer's own logical addresses and
    care giver only (domain_access.Refused: ``producer.not_owner``, ``EI008``), split per patient, on
    the updates topic; returns once the broker acknowledged every message."""
    validate(transactions, rules, producer.source_system)
    check_publisher(caller, transactions)
    return await producer.send(split_per_patient(producer.source_system, transactions))


def validate(transactions: Sequence[EngagementTransaction], rules: Rules, producer: str = "") -> None:
    """Every rule over the request as a whole; InvalidUpdate names transactions by their place
    in it. Without ``producer`` (an index's notification: many source systems), the rule that
    binds the source system to the message's producer does not apply."""
    whole = EngagementUpdate(meta=new_meta(producer or "npo-index"), producer=producer,
                             transactions=transactions)
    try:
        transactions_of(whole, rules)
    except InvalidUpdate as error:
        found = [v for v in error.violations if producer or not _no_producer(v)]
        if found:
            raise InvalidUpdate(found) from None


def _no_producer(violation: Violation) -> bool:
    return violation.transaction < 0 and violation.code is Code.MANDATORY


@dataclass(frozen=True)
class Notifications:
    """Where another index's notifications go, and which owner is this index's own."""

    publisher: EventPublisher
    topic: Topic
    rules: Rules
    own_address: str


async def publish_notification(target: Notifications,
                               transactions: Sequence[EngagementTransaction]) -> list[str]:
    """Another index's changes (EI's ProcessNotification), validated as a whole first.

    As Inera's index does: every engagement must name its owner; those owned by this index are
    dropped (they came back from a subscriber); an engagement that another index now owns
    deletes this index's own copy of it (the same engagement with this index as owner). The
    transactions are published per source system and patient, as producers' updates are.
    """
    missing = [Violation(Code.MANDATORY, i, "owner is missing")
               for i, t in enumerate(transactions) if not t.engagement.owner]
    if missing:
        raise InvalidUpdate(missing)
    validate(transactions, target.rules)
    foreign = [t for t in transactions if t.engagement.owner != target.own_address]
    updates = _per_source([*foreign, *_own_copies_deleted(foreign)])
    futures = [await target.publisher.send(target.topic, patient_key(u), u) for u in updates]
    for future in futures:
        await future
    return [u.meta.event_id for u in updates]


def _own_copies_deleted(transactions: Sequence[EngagementTransaction]) -> list[EngagementTransaction]:
    gone = []
    for tx in transactions:
        if not tx.delete_flag:
            own = Engagement()
            own.CopyFrom(tx.engagement)
            own.owner = ""  # this index's own records carry no owner (stored as NA)
            gone.append(EngagementTransaction(engagement=own, delete_flag=True))
    return gone


def _per_source(transactions: Sequence[EngagementTransaction]) -> list[EngagementUpdate]:
    by_source: dict[str, list[EngagementTransaction]] = {}
    for tx in transactions:
        by_source.setdefault(tx.engagement.source_system, []).append(tx)
    return [u for source, group in by_source.items() for u in split_per_patient(source, group)]


async def find_engagements(store: IndexStore, caller: Caller, query: FindQuery,
                           aggregating_systems: frozenset[str]) -> list[Record]:
    """FindContent: one page (``query.limit``) of the patient's live engagements in
    (service domain, key) order, for an aggregating system only (domain_access.Refused otherwise:
    nothing is read for a refused caller)."""
    check_lookup(caller, aggregating_systems)
    return await store.find(query)


async def find_all(store: IndexStore, caller: Caller, query: FindQuery,
                   aggregating_systems: frozenset[str], *, at_most: int) -> list[Record] | None:
    """Every engagement FindContent matches, page by page; None when more than ``at_most``."""
    check_lookup(caller, aggregating_systems)
    found: list[Record] = []
    page = replace(query, limit=min(query.limit, at_most + 1))
    while True:
        batch = await store.find(page)
        found += batch
        if len(found) > at_most:
            return None
        if len(batch) < page.limit:
            return found
        last = batch[-1]
        page = replace(page, after=(last.identity.service_domain, last.key))
