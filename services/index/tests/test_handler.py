"""The batch handler without a broker: which time EI004 judges against, and the operator's hint."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.structs import ConsumerRecord
from index_helpers import engagement, patient, tx, update

from npo_engagement import Rules
from npo_index.events import IngestHandler
from npo_index.store_memory import InMemoryIndexStore
from npo_platform.contracts import EngagementUpdate
from npo_platform.kafka import PermanentError, Received
from npo_platform.outbox import OutboxRelay
from npo_platform.topics import INDEX_CHANGES

CREATE_TIME, LOG_APPEND_TIME = 0, 1


def _received(
    event: EngagementUpdate, *, at: datetime, kind: int, offset: int = 0
) -> Received[EngagementUpdate]:
    value = event.SerializeToString()
    record = ConsumerRecord(
        topic="updates", partition=0, offset=offset, timestamp=int(at.timestamp() * 1000),
        timestamp_type=kind, key=b"k", value=value, checksum=None, serialized_key_size=1,
        serialized_value_size=len(value), headers=[],
    )
    return Received(event, record)


def _handler() -> tuple[IngestHandler, InMemoryIndexStore]:
    store = InMemoryIndexStore()
    relay = OutboxRelay(store, publisher=None, topic=INDEX_CHANGES)  # type: ignore[arg-type] # never run
    return IngestHandler(store, relay, Rules()), store


async def test_the_future_check_is_against_the_records_time() -> None:
    """An event an hour after its record's time is in the future (EI004); at the record's time it is not."""
    handler, store = _handler()
    now = datetime.now(UTC)
    early = update(tx(engagement(patient(1))), at=now + timedelta(hours=1))
    with pytest.raises(PermanentError) as refused:
        await handler([_received(early, at=now, kind=LOG_APPEND_TIME)])
    assert refused.value.code == "EI004"
    await handler([_received(early, at=now + timedelta(hours=1), kind=LOG_APPEND_TIME, offset=1)])
    assert len(store.rows) == 1


async def test_a_topic_stamped_by_producers_is_named_once_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler, _ = _handler()
    now = datetime.now(UTC)
    with caplog.at_level(logging.WARNING, logger="npo_index.events"):
        await handler([_received(update(tx(engagement(patient(2))), at=now), at=now, kind=LOG_APPEND_TIME)])
        assert caplog.records == []
        for n in range(3):
            event = update(tx(engagement(patient(3 + n))), at=now)
            await handler([_received(event, at=now, kind=CREATE_TIME, offset=1 + n)])
    (warning,) = caplog.records
    assert "LogAppendTime" in warning.getMessage()
