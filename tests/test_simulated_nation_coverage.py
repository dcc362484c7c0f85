"""Issue 4: the simulated nation's notifications, announced through the producer SDK into the real
index (Kafka → consumer → PostgreSQL), give exactly the seed's coverage figure (design.md §5.3)
through the index's own coverage statistics."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from npo_deploy.testing import TopicFactory, serve
from npo_index.config import IndexSettings
from npo_index.main import create_app as index_app
from npo_platform.identity import Principal, Role, TokenVerifier, ensure_local_keypair, issue_token
from npo_platform.topics import ENGAGEMENT_UPDATES
from npo_simulator.cli import producer_sinks
from npo_simulator.organisations import Kind, nation
from npo_simulator.simulation import announce_population
from npo_simulator.store import RecordSource

pytestmark = pytest.mark.integration

POPULATION = 20_000
SEED_SHARES = {  # design.md §5.3, percent of categories 1-11
    "Region Östergötland": 82, "Region Blekinge": 73, "Region Jönköpings län": 64,
    **dict.fromkeys(("Region Dalarna", "Region Jämtland Härjedalen", "Region Kronoberg",
                     "Region Norrbotten", "Region Skåne", "Region Värmland", "Region Västerbotten",
                     "Region Västernorrland", "Region Stockholm", "Region Örebro län"), 55),
    **dict.fromkeys(("Region Halland", "Region Kalmar län", "Västra Götalandsregionen",
                     "Region Uppsala"), 45),
    **dict.fromkeys(("Region Gotland", "Region Gävleborg", "Region Sörmland",
                     "Region Västmanland"), 36),
    **{f"{m} kommun": 27 for m in (
        "Habo", "Haparanda", "Karlshamn", "Karlskrona", "Leksand", "Motala", "Nyköping",
        "Olofström", "Ronneby", "Sölvesborg", "Tierp", "Vadstena", "Varberg", "Västerås",
        "Ängelholm", "Örnsköldsvik")},
    **{f"{m} kommun": 18 for m in (
        "Höör", "Kinda", "Valdemarsvik", "Ydre", "Åtvidaberg", "Ödeshög", "Finspång")},
}


async def test_the_index_computes_the_seeds_coverage_from_simulated_notifications(
    kafka_bootstrap_servers: str, database_url: str, kafka_topic_factory: TopicFactory,
    tmp_path: Path,
) -> None:
    private, public = ensure_local_keypair(tmp_path / "keys")
    run = uuid.uuid4().hex[:8]
    settings = IndexSettings(
        kafka_bootstrap_servers=kafka_bootstrap_servers, database_url=database_url,
        state_dir=tmp_path, jwt_public_key_path=public, db_schema=f"idx_{run}",
        consumer_group=f"idx-{run}", updates_topic=kafka_topic_factory(6),
        changes_topic=kafka_topic_factory(),
    )
    operator = Principal(sub="SE2321000016-OPS1", name="Operator", roles=frozenset({Role.OPERATOR}))
    token = issue_token(private.read_bytes(), operator, timedelta(minutes=30))
    headers = {"Authorization": f"Bearer {token}"}
    source = RecordSource(POPULATION, seed=1)
    async with serve(index_app(settings, token_verifier=TokenVerifier(public.read_bytes()))) as url:
        topic = replace(ENGAGEMENT_UPDATES, name=settings.updates_topic)
        async with producer_sinks(kafka_bootstrap_servers, topic) as sink_for:
            announced = await announce_population(source, sink_for)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
            coverage = await _when_ingested(http, announced.engagements)
    print(f"\n{POPULATION:,} people: {announced.engagements:,} engagements announced and indexed")

    by_controller = {entry["dataController"]: entry for entry in coverage}
    for name, percent in SEED_SHARES.items():
        org = nation().by_name(name)
        share = by_controller[org.care_giver]["shareOfCategories1To11"]
        assert round(share * 100 + 1e-9) == percent, name
    consumers = [o for o in nation().of_kind(Kind.MUNICIPALITY) if not o.publishes]
    assert not {o.care_giver for o in consumers} & set(by_controller), "they only consume"
    assert all(not entry["unknownCodes"] for entry in coverage)


async def _when_ingested(http: httpx.AsyncClient, expected: int) -> list[dict[str, Any]]:
    """Poll the index's coverage until every announced engagement is there."""
    async with asyncio.timeout(180):
        while True:
            answer = await http.get("/coverage")
            assert answer.status_code == 200, answer.text
            coverage: list[dict[str, Any]] = answer.json()
            if sum(entry["engagements"] for entry in coverage) >= expected:
                return coverage
            await asyncio.sleep(0.5)
