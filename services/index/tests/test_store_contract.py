"""One contract for every IndexStore: in memory and in the real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
from index_helpers import T0, changes_in, engagement, patient, schema_name, tx, update

from npo_engagement import Rules, transactions_of
from npo_index.domain import Record
from npo_index.events import outbox_messages
from npo_index.store import FindQuery, IncomingEvent, IndexStore, OutboxBatch
from npo_index.store_memory import InMemoryIndexStore
from npo_index.store_pg import PostgresIndexStore
from npo_platform.contracts import EngagementUpdate, IndexChange

DOMAIN = "riv:clinicalprocess:healthcond:description"
LOGISTICS = "riv:clinicalprocess:logistics:logistics"


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[IndexStore]:
    if request.param == "memory":
        yield InMemoryIndexStore()
        return
    database_url = request.getfixturevalue("database_url")
    pg = await PostgresIndexStore.open(database_url, schema=schema_name(), max_size=2)
    yield pg
    await pg.close()


def _changes(batch: OutboxBatch) -> list[IndexChange]:
    """The changes of a batch's records, in order."""
    return changes_in(m.payload for m in batch.messages)


def _event(u: EngagementUpdate) -> IncomingEvent:
    return IncomingEvent(u.meta.event_id, transactions_of(u, Rules()))


class TestIndexStoreContract:
    async def test_applies_a_batch_and_queues_one_change_per_real_change(self, store: IndexStore) -> None:
        p = patient(21)
        first = update(tx(engagement(p)), tx(engagement(p, categorization="dia")))
        batch = await store.apply_batch([_event(first)], outbox_messages)
        assert batch is not None
        assert len(_changes(batch)) == 2
        assert [m.key for m in batch.messages] == [p]  # one record: one patient's changes
        assert await store.pending_outbox() == [batch]
        await store.remove_outbox([batch.seq])
        assert await store.pending_outbox() == []

    async def test_an_event_delivered_again_changes_nothing(self, store: IndexStore) -> None:
        p = patient(22)
        u = update(tx(engagement(p)), tx(engagement(p, categorization="dia")))
        batch = await store.apply_batch([_event(u), _event(u)], outbox_messages)  # within one batch
        assert batch is not None
        assert len(_changes(batch)) == 2
        rows, coverage = await store.records(), await store.coverage()
        # Again in a later batch (after a crash or a rebalance): no row, change or count moves,
        # with no memory of event ids: none of its transactions is newer than the index.
        assert await store.apply_batch([_event(u)], outbox_messages) is None
        assert await store.apply_batch([_event(u), _event(u)], outbox_messages) is None
        assert await store.records() == rows
        assert await store.coverage() == coverage

    async def test_stale_and_late_updates_never_win(self, store: IndexStore) -> None:
        p = patient(23)
        newer = update(tx(engagement(p, content="20260105000000")), at=T0 + timedelta(minutes=5))
        delete = update(tx(engagement(p), delete=True), at=T0 + timedelta(minutes=9))
        late = update(tx(engagement(p, content="20260101000000")), at=T0)
        await store.apply_batch([_event(newer), _event(late)], outbox_messages)
        (record,) = await store.records()
        assert record.most_recent_content == "20260105000000"
        await store.apply_batch([_event(delete)], outbox_messages)
        assert await store.apply_batch([_event(update(tx(engagement(p)), at=T0))], outbox_messages) is None
        (record,) = await store.records()
        assert record.deleted

    async def test_find_filters_and_pages_in_key_order(self, store: IndexStore) -> None:
        p = patient(24)
        ups = [tx(engagement(p, boi=f"doc-{n}", content=f"202601{n + 10:02d}000000")) for n in range(10)]
        other_domain = tx(engagement(p, service_domain=LOGISTICS))
        await store.apply_batch([_event(update(*ups, other_domain))], outbox_messages)
        pages = await _pages(store, FindQuery(patient=p, service_domains=(DOMAIN,), limit=4))
        keys = [r.key for page in pages for r in page]
        assert [len(page) for page in pages] == [4, 4, 2]
        assert keys == sorted(keys)
        since = await store.find(FindQuery(p, (DOMAIN,), most_recent_content_from="20260115000000"))
        assert len(since) == 5
        exact = await store.find(FindQuery(p, (DOMAIN,), business_object_instance_identifier="doc-3"))
        assert [r.most_recent_content for r in exact] == ["20260113000000"]

    async def test_find_answers_several_domains_in_domain_then_key_order(
        self, store: IndexStore
    ) -> None:
        p = patient(26)
        description = [tx(engagement(p, boi=f"doc-{n}")) for n in range(5)]
        logistics = [tx(engagement(p, boi=f"plan-{n}", service_domain=LOGISTICS)) for n in range(4)]
        elsewhere = tx(engagement(p, service_domain="riv:clinicalprocess:activityprescription:actoutcome"))
        await store.apply_batch([_event(update(*description, *logistics, elsewhere))], outbox_messages)
        both = FindQuery(patient=p, service_domains=(LOGISTICS, DOMAIN), limit=3)
        pages = await _pages(store, both)
        found = [(r.identity.service_domain, r.key) for page in pages for r in page]
        assert [len(page) for page in pages] == [3, 3, 3]  # a page spans the two domains
        assert found == sorted(found)
        assert [d for d, _ in found] == [DOMAIN] * 5 + [LOGISTICS] * 4
        alone = await _pages(store, FindQuery(patient=p, service_domains=(DOMAIN,), limit=100))
        assert [r.key for page in alone for r in page] == [k for d, k in found if d == DOMAIN]

    async def test_coverage_counts_live_engagements(self, store: IndexStore) -> None:
        p = patient(25)
        await store.apply_batch(
            [_event(update(tx(engagement(p)), tx(engagement(p, categorization="dia"))))], outbox_messages
        )
        gone = update(tx(engagement(p), delete=True), at=T0 + timedelta(minutes=1))
        await store.apply_batch([_event(gone)], outbox_messages)
        assert [(c.categorization, c.live) for c in await store.coverage()] == [("dia", 1)]

    async def test_one_mixed_batch_ends_as_applying_its_events_one_by_one(self, store: IndexStore) -> None:
        """Stale, newer, delete, late older, duplicate, recreate and version bumps of the same keys
        in ONE batch (several occurrences per key): rows, changes and counts as applied singly."""
        p = patient(26)
        a, b, c = engagement(p), engagement(p, categorization="dia"), engagement(p, categorization="upp")
        minute = timedelta(minutes=1)
        seeded = update(tx(a), tx(b), at=T0)
        newer_a = update(tx(engagement(p, content="20260102000000")), at=T0 + minute)
        mixed = [
            newer_a,
            update(tx(engagement(p, content="20251231000000")), at=T0 - minute),  # stale
            update(tx(b, delete=True), at=T0 + 2 * minute),
            update(tx(engagement(p, categorization="dia", content="20260109000000")), at=T0 + minute),  # late
            newer_a,  # duplicate
            update(tx(engagement(p, content="20260102000000")), at=T0 + 3 * minute),  # same content
            update(tx(c, delete=True), at=T0 + 2 * minute),  # delete of an unknown record: tombstone
            update(tx(engagement(p, categorization="upp")), at=T0 + minute),  # older than the tombstone
            update(tx(engagement(p, categorization="dia", content="20260110000000")), at=T0 + 5 * minute),
            update(tx(engagement(p, content="20260111000000")), at=T0 + 6 * minute),
        ]
        reference = InMemoryIndexStore()
        expected = []
        for u in [seeded, *mixed]:
            single = await reference.apply_batch([_event(u)], outbox_messages)
            expected += _changes(single) if single is not None and u is not seeded else []
        await store.apply_batch([_event(seeded)], outbox_messages)
        batch = await store.apply_batch([_event(u) for u in mixed], outbox_messages)
        assert batch is not None
        assert _changes(batch) == expected
        kinds = [c.change for c in expected]
        assert kinds == [IndexChange.CONTENT_UPDATED, IndexChange.DELETED, IndexChange.CREATED,
                         IndexChange.CONTENT_UPDATED]
        assert await store.records() == await reference.records()
        assert await store.coverage() == await reference.coverage()


async def _pages(store: IndexStore, query: FindQuery) -> list[list[Record]]:
    """Every page of ``query``, each asked after the previous page's last record."""
    pages: list[list[Record]] = []
    while page := await store.find(replace(query, after=_cursor(pages))):
        pages.append(page)
    return pages


def _cursor(pages: list[list[Record]]) -> tuple[str, bytes] | None:
    if not pages:
        return None
    last = pages[-1][-1]
    return last.identity.service_domain, last.key
