"""The HTTP API's request and answer shapes (camelCase JSON), and their mapping from the domain."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from npo_platform.categories import CATEGORIES, by_key, by_number

from .domain import Record, Status, TargetResult
from .record_law import BLOCKED, hidden_by_block


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class OverviewRequest(_Camel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    patient_id: str = Field(min_length=1, max_length=20, repr=False)
    # Category keys ("notes") or numbers ("8"); empty or absent: all 17.
    categories: list[str] = Field(default_factory=list, max_length=17, validate_default=True)

    @field_validator("categories")
    @classmethod
    def _known(cls, values: list[str]) -> list[str]:
        keys = [_key(v) for v in values] or [c.key for c in CATEGORIES]
        return sorted(set(keys), key=lambda k: by_key(k).number)


def _key(value: str) -> str:
    try:
        return by_number(int(value)).key if value.isdigit() else by_key(value).key
    except LookupError:
        raise ValueError("unknown information category") from None


class ProducerOut(_Camel):
    """One target's status. Where a block withholds it, nothing of it is told: one entry with
    no address, care giver or category stands for every blocked target, after the others."""

    logical_address: str | None
    data_controller: str | None
    category: str | None
    status: Status
    cause: str | None
    http_status: int | None = None
    record_count: int = 0
    duration_ms: float = 0.0


class RecordOut(_Camel):
    category: str
    logical_address: str
    document_id: str
    source_system: str
    time: str
    document: dict[str, Any]


class OverviewOut(_Camel):
    outcome: str
    basis: str
    reason_code: str | None
    blocked_information_exists: bool
    protected_identity: bool
    protected_fields: list[str]
    categories: list[str]
    producers_called: int
    producers: list[ProducerOut]
    records: list[RecordOut]
    trace_id: str
    access_event_id: str


class SubscribeRequest(OverviewRequest):
    pass


# What the reader is told of every target a block withholds (or all of whose records it does):
# only that blocked information exists, never where nor of which kind (design.md §5.5).
BLOCKED_ENTRY: dict[str, Any] = {
    "logicalAddress": None, "dataController": None, "category": None,
    "status": Status.WITHHELD_BY_DECISION.value, "cause": BLOCKED, "httpStatus": None,
    "recordCount": 0, "durationMs": 0.0}


def producer_json(result: TargetResult) -> dict[str, Any]:
    """``ProducerOut`` as JSON (by alias), built directly: the answer is serialised once,
    without building and validating a model per producer first."""
    if hidden_by_block(result):
        return BLOCKED_ENTRY
    target = result.target
    return {"logicalAddress": target.logical_address, "dataController": target.data_controller,
            "category": target.category, "status": result.status.value, "cause": result.cause,
            "httpStatus": result.http_status, "recordCount": len(result.records),
            "durationMs": float(result.duration_ms)}


def producers_json(results: Iterable[TargetResult]) -> list[dict[str, Any]]:
    """The reader's list of targets: each one told, and the blocked ones as one entry, last."""
    listed = [producer_json(r) for r in results]
    told = [p for p in listed if p is not BLOCKED_ENTRY]
    return [*told, BLOCKED_ENTRY] if len(told) < len(listed) else told


def record_json(record: Record) -> dict[str, Any]:
    """``RecordOut`` as JSON (by alias); the document as the producer sent it."""
    return {"category": record.category, "logicalAddress": record.logical_address,
            "documentId": record.document_id, "sourceSystem": record.source_system,
            "time": record.author_time, "document": record.document}
