"""Builders shared by the index tests: valid engagements, updates and an isolated index setup."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta

from npo_platform.contracts import EngagementUpdate, IndexChange, IndexChanges
from npo_platform.contracts.events_pb2 import Engagement, EngagementTransaction
from npo_platform.events import new_meta
from npo_platform.identifiers import make_personnummer

PRODUCER = "SE2321000016-1234"
CONTROLLER = "SE2321000016-0001"
ADDRESS = "SE2321000016-9876"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def changes_in(records: Iterable[bytes]) -> list[IndexChange]:
    """The changes that serialised change-stream records (IndexChanges) hold, in order."""
    return [change for record in records for change in IndexChanges.FromString(record).changes]


def patient(n: int) -> str:
    """A valid personnummer, distinct for n in 0..(365*999)."""
    return make_personnummer(date(1950, 1, 1) + timedelta(days=n // 999), n % 999)


def engagement(
    patient_id: str,
    *,
    content: str = "20260101120000",
    service_domain: str = "riv:clinicalprocess:healthcond:description",
    categorization: str = "voo",
    logical_address: str = ADDRESS,
    source_system: str = PRODUCER,
    data_controller: str = CONTROLLER,
    boi: str = "",
) -> Engagement:
    return Engagement(
        registered_resident_identification=patient_id,
        service_domain=service_domain,
        categorization=categorization,
        logical_address=logical_address,
        business_object_instance_identifier=boi,
        most_recent_content=content,
        source_system=source_system,
        data_controller=data_controller,
    )


def tx(e: Engagement, *, delete: bool = False) -> EngagementTransaction:
    return EngagementTransaction(engagement=e, delete_flag=delete)


def update(
    *transactions: EngagementTransaction, at: datetime = T0, producer: str = PRODUCER
) -> EngagementUpdate:
    return EngagementUpdate(meta=new_meta(producer, at=at), producer=producer, transactions=transactions)


def schema_name() -> str:
    return f"idx_{uuid.uuid4().hex[:10]}"


def topic_name() -> str:
    return f"test.index.{uuid.uuid4().hex[:8]}"


async def wait_for(condition: Callable[[], object], seconds: float, every: float = 0.05) -> None:
    """Poll an async or sync ``condition`` until it is truthy, or fail after ``seconds``."""
    async with asyncio.timeout(seconds):
        while True:
            result = condition()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(every)
