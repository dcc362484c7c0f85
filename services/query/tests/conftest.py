"""Fixtures of the query's integration tests: the simulated producers (one per test module,
behaviour reset for each test) and the query's settings around them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from query_fixtures import Simulator, settings, simulator

from npo_deploy.testing import TopicFactory


@pytest.fixture(scope="module")
async def sim() -> AsyncIterator[Simulator]:
    async with simulator() as running_simulator:
        yield running_simulator


@pytest.fixture
async def fresh(sim: Simulator) -> Simulator:
    await sim.reset()
    return sim


@pytest.fixture
def make(tmp_path: Path, kafka_bootstrap_servers: str, database_url: str, fresh: Simulator,
         kafka_topic_factory: TopicFactory) -> Any:
    def build(**overrides: Any) -> Any:
        return settings(tmp_path, kafka_bootstrap_servers, database_url, fresh.url,
                        kafka_topic_factory, **overrides)

    return build
