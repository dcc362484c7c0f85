"""Event envelope: metadata, protobuf (de)serialisation and the Kafka headers of every event."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from npo_platform.contracts import EventMeta

M = TypeVar("M", bound=Message)
Headers = list[tuple[str, bytes]]

EVENT_TYPE_HEADER = "npo-event-type"
EVENT_ID_HEADER = "npo-event-id"


class InvalidEvent(ValueError):
    """A record that cannot be an event of the expected type; never worth retrying."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def new_meta(source: str, *, correlation_id: str = "", at: datetime | None = None) -> EventMeta:
    """Metadata for a new event: a fresh UUID, the event time (now by default) and its source."""
    meta = EventMeta(event_id=str(uuid.uuid4()), source=source, correlation_id=correlation_id)
    meta.event_time.FromDatetime(at or datetime.now(UTC))
    return meta


def event_headers(event: Message) -> Headers:
    """Headers naming the event's type and id, so a reader can route or dead-letter it undecoded."""
    meta = getattr(event, "meta", None)
    event_id = meta.event_id if meta is not None else ""
    return [
        (EVENT_TYPE_HEADER, event.DESCRIPTOR.full_name.encode()),
        (EVENT_ID_HEADER, event_id.encode()),
    ]


def header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    """The last value of a header, decoded, or None."""
    found = [value for key, value in headers if key == name]
    return found[-1].decode(errors="replace") if found else None


def decode(message_type: type[M], value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> M:
    """Parse a record's value as ``message_type``; raise InvalidEvent (stable code) if it isn't."""
    expected = message_type.DESCRIPTOR.full_name
    declared = header(headers, EVENT_TYPE_HEADER)
    if declared is not None and declared != expected:
        detail = f"header says {declared!r}, topic holds {expected!r}"
        raise InvalidEvent("event.wrong_type", detail)
    if not value:
        raise InvalidEvent("event.empty", "record has no value")
    event = message_type()
    try:
        event.ParseFromString(value)
    except DecodeError as exc:
        raise InvalidEvent("event.undecodable", f"not a valid {expected}: {exc}") from None
    meta = getattr(event, "meta", None)
    if meta is None or not meta.event_id:
        raise InvalidEvent("event.missing_id", f"{expected} without meta.event_id")
    return event
