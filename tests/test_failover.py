"""Issue 24: on a three-node cluster, kill -9 of the access-events leader, then of two nodes at once,
under a steady load of reads and updates, loses, duplicates and leaves unaudited nothing; with
two of three down every read is refused with 503 and no data (``npo bench failover``, shorter)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from npo_bench.failover import QUERY_OPTIONS, Plan, figures, run_load
from npo_bench.nation import Nation, running_nation
from npo_deploy.kafka import LocalCluster
from npo_deploy.processes import run_async

pytestmark = pytest.mark.integration

PLAN = Plan(steady_s=4.0, down_s=10.0, reads_per_s=2.0, updates_per_s=3.0, faults=("leader", "two"))


@pytest.fixture(scope="module")
def nation(kafka_cluster: LocalCluster, database_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    with running_nation(kafka_cluster.bootstrap, database_url, tmp_path_factory.mktemp("nation"),
                        population=200, query_options=QUERY_OPTIONS) as running:
        yield running


def test_nodes_killed_under_load_lose_duplicate_and_leave_unaudited_nothing(
    nation: Nation, kafka_cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    load = run_async(run_load(kafka_cluster, nation, PLAN))
    found = run_async(figures(kafka_cluster, nation, PLAN, load))
    with capsys.disabled():
        print("\nfailover on three nodes:", found)

    assert found["lost"] == dict.fromkeys(found["lost"], 0)
    assert found["acked_lost"] == 0
    assert found["repeated"] == dict.fromkeys(found["repeated"], 0)
    assert found["duplicates"] == 0
    assert found["reads_unaudited"] == 0
    assert found["consumer_lag"] == {"consent": 0, "audit": 0, "idx": 0}, "consumers resumed"
    assert found["reads_other"] == 0, "every read answered or refused, none timed out"
    assert found["reads_two_down"] > 0, "some reads fell wholly within the two-node outage"
    assert found["reads_refused_two_down"] == found["reads_two_down"]
    assert load.reads[-1].status == 200, "served again once the nodes are back"
    assert len(load.confirmed) == load.sent
