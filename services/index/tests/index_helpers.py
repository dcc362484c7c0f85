"""Builders shared by the index tests: valid engagements, updates and an isolated index setup."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from npo_index.domain import Applied, Change
from npo_index.events import change_event_id
from npo_platform.contracts import EngagementUpdate, EventMeta, IndexChange, IndexChanges
from npo_platform.contracts.events_pb2 import Engagement, EngagementTransaction
from npo_platform.events import new_meta
from npo_platform.identifiers import make_personnummer
from npo_platform.identity import Principal, Role, TokenVerifier, ensure_local_keypair, issue_token

PRODUCER = "SE2321000016-1234"
CONTROLLER = "SE2321000016-0001"
AGGREGATOR = "SE5565594230-NPOAGP"  # IndexSettings().find_content_systems: the query service
ADDRESS = "SE2321000016-9876"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def expected_change(applied: Applied) -> IndexChange:
    """The change event of ``applied`` built with protobuf's own API: what the index's hand
    encoder (``npo_index.events.encode_change``) must serialise, byte for byte."""
    assert applied.record is not None
    assert applied.change is not None
    record, version = applied.record, applied.cause.version
    (patient_id, domain, categorization, address, boi, process, source, controller, owner) = (
        record.identity.parts()
    )
    meta = EventMeta(event_id=change_event_id(version.event_id, record.key), source="npo-index")
    meta.event_time.FromDatetime(version.event_time)
    engagement = Engagement(
        registered_resident_identification=patient_id, service_domain=domain,
        categorization=categorization, logical_address=address,
        business_object_instance_identifier=boi, clinical_process_interest_id=process,
        most_recent_content=record.most_recent_content, source_system=source,
        data_controller=controller, owner=owner,
    )
    engagement.creation_time.FromDatetime(record.creation_time)
    engagement.update_time.FromDatetime(record.update_time)
    kinds = {Change.CREATED: IndexChange.CREATED, Change.CONTENT_UPDATED: IndexChange.CONTENT_UPDATED,
             Change.DELETED: IndexChange.DELETED}
    return IndexChange(meta=meta, change=kinds[applied.change], engagement=engagement,
                       engagement_key=record.key.hex(), caused_by_event_id=version.event_id)


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


class Tokens:
    def __init__(self, keys: Path) -> None:
        private, public = ensure_local_keypair(keys)
        self._private = private.read_bytes()
        self.verifier = TokenVerifier(public.read_bytes())

    def bearer(self, role: Role, sub: str = "SE2321000016-0042", **extra: object) -> dict[str, str]:
        if role is Role.PRODUCER:
            extra = {"care_giver": CONTROLLER, **extra}  # a producer's token names its care giver
        principal = Principal(sub=sub, name="test", roles=frozenset({role}), **extra)  # type: ignore[arg-type]
        token = issue_token(self._private, principal, timedelta(minutes=5))
        return {"Authorization": f"Bearer {token}"}

    def aggregator(self) -> dict[str, str]:
        """The aggregating system (the query service): FindContent answers only it."""
        return self.bearer(Role.SYSTEM, sub=AGGREGATOR)
