"""The HTTP API's request and answer shapes (camelCase JSON), and their mapping from the domain."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from npo_platform.categories import CATEGORIES, by_key, by_number

from .domain import Record, Status, TargetResult

BLOCKED = "blocked"


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
    """One target's status. Where a block withholds it, *where* is not told (only that)."""

    logical_address: str | None
    data_controller: str | None
    category: str
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


def producer_json(result: TargetResult) -> dict[str, Any]:
    """``ProducerOut`` as JSON (by alias), built directly: the answer is serialised once,
    without building and validating a model per producer first."""
    hidden = result.status is Status.WITHHELD_BY_DECISION and result.cause == BLOCKED
    target = result.target
    return {"logicalAddress": None if hidden else target.logical_address,
            "dataController": None if hidden else target.data_controller,
            "category": target.category, "status": result.status.value, "cause": result.cause,
            "httpStatus": result.http_status, "recordCount": len(result.records),
            "durationMs": float(result.duration_ms)}


def record_json(record: Record) -> dict[str, Any]:
    """``RecordOut`` as JSON (by alias); the document as the producer sent it."""
    return {"category": record.category, "logicalAddress": record.logical_address,
            "documentId": record.document_id, "sourceSystem": record.source_system,
            "time": record.author_time, "document": record.document}
