"""Engagement notifications for simulated records, published through the producer SDK.

A producer announces one engagement per (patient, category code) it holds, with the time of
its newest record as ``mostRecentContent``; a newer record re-announces it. Social-services
records are announced only where the municipality hands them out (records.py), as notes, at the
address they are served from.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from npo_platform.categories import by_number
from npo_platform.contracts.events_pb2 import Engagement, EngagementTransaction
from npo_simulator.organisations import Organisation
from npo_simulator.records import Record

CONTENT_TIME_FORMAT = "%Y%m%d%H%M%S"


class EngagementSink(Protocol):
    """What the simulator needs of the producer SDK: publish and confirm."""

    async def publish(self, transactions: Sequence[EngagementTransaction]) -> list[str]: ...


def code_of(record: Record) -> tuple[str, str]:
    """(serviceDomain, categorization) of a record; category 10 has two codes."""
    codes = by_number(record.served_category).codes
    return codes[record.variant % len(codes)]


def engagement(record: Record, most_recent: datetime) -> EngagementTransaction:
    org = record.producer
    service_domain, categorization = code_of(record)
    return EngagementTransaction(engagement=Engagement(
        registered_resident_identification=record.patient_id,
        service_domain=service_domain,
        categorization=categorization,
        logical_address=record.logical_address,
        source_system=org.source_system,
        data_controller=org.care_giver,
        most_recent_content=most_recent.strftime(CONTENT_TIME_FORMAT),
    ))


def engagements_by_producer(
    records: Iterable[Record],
) -> dict[Organisation, list[EngagementTransaction]]:
    """The engagements the records imply, per producer (newest record per engagement)."""
    newest: dict[tuple[Organisation, str, str, tuple[str, str]], Record] = {}
    for record in records:
        if not record.announced:
            continue
        key = (record.producer, record.patient_id, record.logical_address, code_of(record))
        if key not in newest or record.time > newest[key].time:
            newest[key] = record
    by_producer: dict[Organisation, list[EngagementTransaction]] = defaultdict(list)
    for (org, *_), record in sorted(newest.items(), key=lambda kv: kv[1].record_id):
        by_producer[org].append(engagement(record, record.time))
    return dict(by_producer)
