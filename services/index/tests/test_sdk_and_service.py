"""Producer SDK and the whole service (lifespan: store, consumer, HTTP) on the real stack."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from index_helpers import ADDRESS, PRODUCER, engagement, patient, schema_name, topic_name, tx, wait_for

from npo_engagement import InvalidUpdate
from npo_index.config import IndexSettings
from npo_index.main import create_app, ensure_index_topics
from npo_platform.identity import Principal, Role, TokenVerifier, ensure_local_keypair, issue_token
from npo_producer import EngagementProducer

DOMAIN = "riv:clinicalprocess:healthcond:description"


def test_the_sdk_validates_and_splits_per_patient_before_sending() -> None:
    producer = EngagementProducer(None, PRODUCER)  # type: ignore[arg-type]  # never reached
    with pytest.raises(InvalidUpdate) as caught:
        producer.prepare([tx(engagement(patient(81), content="now"))])
    assert caught.value.codes == ("EI004",)
    many = [tx(engagement(patient(n % 3), boi=f"d{n}")) for n in range(2500)]
    updates = producer.prepare(many)
    assert sorted(len(u.transactions) for u in updates) == [833, 833, 834]
    assert all(len({t.engagement.registered_resident_identification for t in u.transactions}) == 1
               for u in updates)
    big = producer.prepare([tx(engagement(patient(90), boi=f"d{n}")) for n in range(2100)])
    assert [len(u.transactions) for u in big] == [1000, 1000, 100]


@pytest.mark.integration
async def test_sdk_publish_is_confirmed_and_visible_through_the_running_service(
    database_url: str, kafka_bootstrap_servers: str, tmp_path: Path
) -> None:
    settings = IndexSettings(
        database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap_servers,
        updates_topic=topic_name(), changes_topic=topic_name(), db_schema=schema_name(),
        consumer_group=f"g-{uuid.uuid4().hex[:8]}", db_pool_size=3,
    )
    private, public = ensure_local_keypair(tmp_path / "keys")
    app = create_app(settings, token_verifier=TokenVerifier(public.read_bytes()))
    principal = Principal(sub=next(iter(settings.find_content_systems)), name="query",
                          roles=frozenset({Role.SYSTEM}))  # FindContent answers the aggregator
    token = issue_token(private.read_bytes(), principal, timedelta(minutes=5))
    headers = {"Authorization": f"Bearer {token}"}
    await ensure_index_topics(settings)
    p = patient(82)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://index.test") as client,
        EngagementProducer.connect(kafka_bootstrap_servers, PRODUCER, topic=settings.updates) as producer,
    ):
        ids = await producer.publish([tx(engagement(p, logical_address=ADDRESS)),
                                      tx(engagement(p, categorization="dia"))])
        assert len(ids) == 1

        async def visible() -> bool:
            body = {"registeredResidentIdentification": p, "serviceDomain": DOMAIN}
            response = await client.post("/find-content", json=body, headers=headers)
            return len(response.json()["engagements"]) == 2

        await wait_for(visible, 30)
