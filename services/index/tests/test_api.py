"""HTTP: FindContent (paging, filters, roles), coverage and producer ingest, on the real stack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from index_helpers import (
    ADDRESS,
    CONTROLLER,
    PRODUCER,
    Tokens,
    engagement,
    patient,
    schema_name,
    topic_name,
    tx,
    update,
)

from npo_engagement import Rules, transactions_of
from npo_index.api import FindContentResponse
from npo_index.config import IndexSettings
from npo_index.events import outbox_messages
from npo_index.main import create_app, ensure_index_topics
from npo_index.store import IncomingEvent
from npo_index.store_pg import PostgresIndexStore
from npo_platform.contracts import EngagementUpdate
from npo_platform.identity import Role
from npo_platform.kafka import EventPublisher
from npo_platform.settings import kafka_client_options

pytestmark = pytest.mark.integration
DOMAIN = "riv:clinicalprocess:healthcond:description"
AGGREGATOR = next(iter(IndexSettings().find_content_systems))
P = patient(61)


Setup = tuple[httpx.AsyncClient, "Tokens", PostgresIndexStore, IndexSettings]


@pytest.fixture
async def setup(
    database_url: str, kafka_bootstrap_servers: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Tokens, PostgresIndexStore, IndexSettings]]:
    settings = IndexSettings(
        database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap_servers,
        updates_topic=topic_name(), db_schema=schema_name(), find_content_max_page=50,
    )
    await ensure_index_topics(settings)
    store = await PostgresIndexStore.open(database_url, schema=settings.db_schema, max_size=2)
    publisher = EventPublisher(kafka_bootstrap_servers)
    await publisher.start()
    tokens = Tokens(tmp_path / "keys")
    app = create_app(settings, store=store, publisher=publisher, token_verifier=tokens.verifier)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://npo-index.test") as client:
        yield client, tokens, store, settings
    await publisher.stop()
    await store.close()


async def _load(store: PostgresIndexStore, *updates: EngagementUpdate) -> None:
    events = [IncomingEvent(u.meta.event_id, transactions_of(u, Rules())) for u in updates]
    await store.apply_batch(events, outbox_messages)


async def test_find_content_pages_through_a_large_answer(setup: Setup) -> None:
    client, tokens, store, _ = setup
    await _load(store, update(*[tx(engagement(P, boi=f"doc-{n}")) for n in range(120)]))
    body: dict[str, object] = {
        "registeredResidentIdentification": P, "serviceDomain": DOMAIN, "pageSize": 500,
    }
    seen: list[str] = []
    while True:
        response = await client.post("/find-content", json=body, headers=tokens.aggregator())
        assert response.status_code == 200
        answer = response.json()
        assert len(answer["engagements"]) <= 50  # the configured page limit wins over pageSize
        seen += [e["businessObjectInstanceIdentifier"] for e in answer["engagements"]]
        if answer["nextPageToken"] is None:
            break
        body["pageToken"] = answer["nextPageToken"]
    assert sorted(seen) == sorted(f"doc-{n}" for n in range(120))


async def test_find_content_answers_match_their_schema(setup: Setup) -> None:
    client, tokens, store, _ = setup
    await _load(store, update(*[tx(engagement(P, boi=f"doc-{n}")) for n in range(60)]))
    body = {"registeredResidentIdentification": P, "serviceDomain": DOMAIN}
    answer = (await client.post("/find-content", json=body, headers=tokens.aggregator())).json()
    assert answer["nextPageToken"] is not None  # a full page of the 50 the app allows
    assert FindContentResponse.model_validate(answer).model_dump(by_alias=True) == answer
    first = answer["engagements"][0]
    assert first["registeredResidentIdentification"] == P
    assert first["creationTime"] == first["updateTime"]
    assert datetime.fromisoformat(first["creationTime"]).tzinfo is not None


async def test_find_content_answers_several_service_domains_in_one_paged_answer(setup: Setup) -> None:
    client, tokens, store, _ = setup
    logistics = "riv:clinicalprocess:logistics:logistics"
    await _load(store, update(*[tx(engagement(P, boi=f"doc-{n}")) for n in range(40)],
                              *[tx(engagement(P, boi=f"plan-{n}", service_domain=logistics,
                                              categorization="cll-cp")) for n in range(30)],
                              tx(engagement(P, service_domain="riv:other:domain"))))
    body: dict[str, object] = {
        "registeredResidentIdentification": P, "serviceDomains": [logistics, DOMAIN],
    }
    seen: list[tuple[str, str]] = []
    while True:
        response = await client.post("/find-content", json=body, headers=tokens.aggregator())
        assert response.status_code == 200
        answer = response.json()
        seen += [(e["serviceDomain"], e["businessObjectInstanceIdentifier"]) for e in answer["engagements"]]
        if answer["nextPageToken"] is None:
            break
        body["pageToken"] = answer["nextPageToken"]
    assert len(seen) == 70  # two pages of 50 at most; the second begins in the first domain
    assert sorted(seen) == sorted([(DOMAIN, f"doc-{n}") for n in range(40)]
                                  + [(logistics, f"plan-{n}") for n in range(30)])
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


async def test_find_content_refuses_two_ways_of_naming_domains_and_foreign_page_tokens(
    setup: Setup,
) -> None:
    client, tokens, store, _ = setup
    await _load(store, update(*[tx(engagement(P, boi=f"doc-{n}")) for n in range(60)]))
    admin = tokens.aggregator()
    both = {"registeredResidentIdentification": P, "serviceDomain": DOMAIN, "serviceDomains": [DOMAIN]}
    neither = {"registeredResidentIdentification": P}
    nul = {"registeredResidentIdentification": P, "serviceDomains": ["riv:\x00"]}
    for body in (both, neither, nul, {**neither, "serviceDomains": []}):
        assert (await client.post("/find-content", json=body, headers=admin)).status_code == 422
    first = await client.post("/find-content", json={**neither, "serviceDomain": DOMAIN}, headers=admin)
    token = first.json()["nextPageToken"]
    other = {**neither, "serviceDomain": "riv:other:domain", "pageToken": token}
    not_utf8 = {**neither, "serviceDomain": DOMAIN, "pageToken": token[:64] + "ff"}
    for body in (other, not_utf8):
        response = await client.post("/find-content", json=body, headers=admin)
        assert (response.status_code, response.json()["code"]) == (422, "page_token.invalid")
    ok = await client.post("/find-content", json={**other, "serviceDomain": DOMAIN}, headers=admin)
    assert len(ok.json()["engagements"]) == 10


async def test_find_content_filters_exactly_and_on_or_after(setup: Setup) -> None:
    client, tokens, store, _ = setup
    await _load(store, update(tx(engagement(P, categorization="dia", content="20250101000000")),
                              tx(engagement(P, categorization="voo", content="20260301000000"))))
    body = {
        "registeredResidentIdentification": P, "serviceDomain": DOMAIN, "mostRecentContent": "20260101000000",
    }
    answer = (await client.post("/find-content", json=body, headers=tokens.aggregator())).json()
    assert [e["categorization"] for e in answer["engagements"]] == ["voo"]
    body = {"registeredResidentIdentification": P, "serviceDomain": DOMAIN, "categorization": "dia"}
    answer = (await client.post("/find-content", json=body, headers=tokens.aggregator())).json()
    assert [e["mostRecentContent"] for e in answer["engagements"]] == ["20250101000000"]


async def test_find_content_answers_only_the_aggregating_systems(setup: Setup) -> None:
    client, tokens, store, _ = setup
    await _load(store, update(tx(engagement(P))))
    body = {"registeredResidentIdentification": P, "serviceDomain": DOMAIN}
    assert (await client.post("/find-content", json=body)).status_code == 401
    # Where a patient was treated is sensitive: no person's token and no other system looks it up.
    for who in (tokens.bearer(Role.OPERATOR), tokens.bearer(Role.ADMIN),
                tokens.bearer(Role.PRODUCER, sub=PRODUCER), tokens.bearer(Role.SYSTEM)):
        response = await client.post("/find-content", json=body, headers=who)
        assert (response.status_code, response.json()["code"]) == (403, "find_content.not_aggregating")
        assert P not in response.text
    assert len((await client.post("/find-content", json=body, headers=tokens.aggregator())).json()[
        "engagements"]) == 1
    missing = await client.post("/find-content", json={"serviceDomain": DOMAIN}, headers=tokens.aggregator())
    assert missing.status_code == 422


async def test_a_producer_may_name_only_its_own_care_giver_as_data_controller(setup: Setup) -> None:
    client, tokens, _, _ = setup
    headers = tokens.bearer(Role.PRODUCER, sub=PRODUCER, logical_addresses=frozenset({ADDRESS}))
    mine, theirs = engagement(P), engagement(P, categorization="dia", data_controller="SE2321000032-0001")
    response = await client.post("/engagement-updates", json=_ingest_body(mine, theirs), headers=headers)
    assert (response.status_code, response.json()["codes"]) == (403, ["EI008"])


async def test_coverage_reports_the_share_of_categories_1_to_11(setup: Setup) -> None:
    client, tokens, store, _ = setup
    plan = engagement(P, service_domain="riv:clinicalprocess:logistics:logistics", categorization="cll-cp")
    functional = engagement(P, categorization="fun-fun")
    await _load(store, update(tx(engagement(P)), tx(plan), tx(functional)))
    response = await client.get("/coverage", headers=tokens.bearer(Role.OPERATOR))
    assert response.json() == [{
        "dataController": CONTROLLER, "categories": [8, 10, 11], "engagements": 3,
        "shareOfCategories1To11": round(3 / 11, 4), "unknownCodes": [],
    }]
    producer = tokens.bearer(Role.PRODUCER, sub=PRODUCER)
    assert (await client.get("/coverage", headers=producer)).status_code == 403


def _ingest_body(*engagements: object) -> dict[str, object]:
    rows = []
    for e in engagements:
        rows.append({"engagement": {
            "registeredResidentIdentification": e.registered_resident_identification,  # type: ignore[attr-defined]
            "serviceDomain": e.service_domain, "categorization": e.categorization,  # type: ignore[attr-defined]
            "logicalAddress": e.logical_address, "sourceSystem": e.source_system,  # type: ignore[attr-defined]
            "dataController": e.data_controller, "mostRecentContent": e.most_recent_content,  # type: ignore[attr-defined]
        }})
    return {"transactions": rows}


async def test_producer_ingest_splits_per_patient_and_writes_the_topic(setup: Setup) -> None:
    client, tokens, _, settings = setup
    other = patient(62)
    body = _ingest_body(engagement(P), engagement(P, categorization="dia"), engagement(other))
    headers = tokens.bearer(Role.PRODUCER, sub=PRODUCER, logical_addresses=frozenset({ADDRESS}))
    response = await client.post("/engagement-updates", json=body, headers=headers)
    assert response.status_code == 202
    assert len(response.json()["eventIds"]) == 2
    consumer = AIOKafkaConsumer(settings.updates_topic,
                                **kafka_client_options(settings.kafka_bootstrap_servers),
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        records = []
        while len(records) < 2:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records += batch
    finally:
        await consumer.stop()
    by_key = {r.key.decode(): len(EngagementUpdate.FromString(r.value).transactions) for r in records}
    assert by_key == {P: 2, other: 1}


async def test_a_producer_may_publish_only_for_its_own_addresses(setup: Setup) -> None:
    client, tokens, _, _ = setup
    headers = tokens.bearer(Role.PRODUCER, sub=PRODUCER, logical_addresses=frozenset({"SE2321000016-0000"}))
    response = await client.post("/engagement-updates", json=_ingest_body(engagement(P)), headers=headers)
    assert (response.status_code, response.json()["code"]) == (403, "producer.not_owner")
    own = tokens.bearer(Role.PRODUCER, sub="SE2321000016-5555", logical_addresses=frozenset({ADDRESS}))
    response = await client.post("/engagement-updates", json=_ingest_body(engagement(P)), headers=own)
    assert (response.status_code, response.json()["codes"]) == (422, ["EI007"])
    reader = await client.post("/engagement-updates", json=_ingest_body(engagement(P)),
                               headers=tokens.bearer(Role.OPERATOR))
    assert reader.status_code == 403


async def test_ingest_rejects_invalid_transactions_with_ei_codes(setup: Setup) -> None:
    client, tokens, _, _ = setup
    headers = tokens.bearer(Role.PRODUCER, sub=PRODUCER, logical_addresses=frozenset({ADDRESS}))
    response = await client.post(
        "/engagement-updates", json=_ingest_body(engagement(P, content="soon")), headers=headers
    )
    assert response.status_code == 422
    assert response.json()["code"] == "EI004"
    assert P not in response.text
