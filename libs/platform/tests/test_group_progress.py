"""GroupProgress waits through a broker's start, when it has no group coordinator yet."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka.errors import GroupCoordinatorNotAvailableError

from npo_platform.kafka_admin import GroupProgress


async def test_waiting_for_a_group_outlasts_a_broker_without_a_coordinator_yet() -> None:
    """A freshly started broker answers GroupCoordinatorNotAvailable for a while; the wait for a
    stable group asks again instead of failing (npo bench ingest on a new local stack)."""
    answers: list[object] = [GroupCoordinatorNotAvailableError(), GroupCoordinatorNotAvailableError(),
                             SimpleNamespace(groups=[(0, "g", "Stable", "consumer", "range", ["m"])])]

    async def describe(_: list[str]) -> list[object]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return [answer]

    progress = GroupProgress.__new__(GroupProgress)
    progress._group, progress._admin = "g", SimpleNamespace(describe_consumer_groups=describe)  # type: ignore[assignment]
    await progress.wait_stable(members=1, within_s=10)
    assert answers == []
