"""Announcing and streaming through the SDK interface (an in-memory sink here; Kafka in tests/)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from npo_platform.categories import find_by_code
from npo_platform.contracts.events_pb2 import EngagementTransaction
from npo_simulator.organisations import Organisation
from npo_simulator.simulation import announce_population, stream
from npo_simulator.store import RecordSource


class MemorySink:
    def __init__(self, org: Organisation, published: list[tuple[Organisation, EngagementTransaction]]):
        self.org, self.published = org, published

    async def publish(self, transactions: Sequence[EngagementTransaction]) -> list[str]:
        self.published.extend((self.org, tx) for tx in transactions)
        return [str(len(self.published))]


async def test_announce_covers_every_person_and_only_published_categories() -> None:
    source = RecordSource(1_000, seed=2)
    published: list[tuple[Organisation, EngagementTransaction]] = []
    progress = await announce_population(source, lambda org: MemorySink(org, published), chunk=300)
    assert progress.people == 1_000
    assert progress.engagements == len(published) > 0
    for org, tx in published:
        category = find_by_code(tx.engagement.service_domain, tx.engagement.categorization)
        assert category is not None
        assert category.number in org.publishes
        assert tx.engagement.source_system == org.source_system


async def test_stream_holds_its_rate_and_serves_what_it_announced() -> None:
    source = RecordSource(1_000, seed=2)
    published: list[tuple[Organisation, EngagementTransaction]] = []
    now = datetime(2026, 11, 28, 12, 0, 0)
    progress = await stream(source, lambda org: MemorySink(org, published), rate=40, seconds=1.0,
                            clock=lambda: now)
    assert 30 <= progress.people <= 42
    assert published, "new care events are announced"
    for org, tx in published:
        assert tx.engagement.most_recent_content == "20261128120000"
        category = find_by_code(tx.engagement.service_domain, tx.engagement.categorization)
        assert category is not None
        served = source.records(tx.engagement.registered_resident_identification, org, category.number)
        assert any(r.time == now for r in served), "the producer serves the record it announced"
