"""Event envelope: metadata, headers, decoding with stable error codes; contracts generated fresh."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from npo_platform.contracts import AccessEvent, ConsentEvent, EngagementUpdate
from npo_platform.events import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    InvalidEvent,
    decode,
    event_headers,
    new_meta,
)
from npo_platform.topics import ALL_TOPICS

ROOT = Path(__file__).resolve().parents[3]


def test_new_meta_has_unique_id_time_and_source() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    first, second = new_meta("npo-index", at=at), new_meta("npo-index")
    assert first.event_id != second.event_id
    assert first.source == "npo-index"
    assert first.event_time.ToDatetime(tzinfo=UTC) == at


def test_headers_name_type_and_id() -> None:
    event = AccessEvent(meta=new_meta("npo-query"))
    headers = dict(event_headers(event))
    assert headers[EVENT_TYPE_HEADER] == b"npo.events.v1.AccessEvent"
    assert headers[EVENT_ID_HEADER] == event.meta.event_id.encode()


def test_round_trip() -> None:
    event = EngagementUpdate(meta=new_meta("SE2321000016-ABCD"), producer="SE2321000016-ABCD")
    event.transactions.add().engagement.categorization = "voo"
    decoded = decode(EngagementUpdate, event.SerializeToString(), event_headers(event))
    assert decoded == event


@pytest.mark.parametrize(
    ("value", "headers", "code"),
    [
        (b"", [], "event.empty"),
        (None, [], "event.empty"),
        (b"\xff\x00garbage", [], "event.undecodable"),
        (AccessEvent(patient_id="x").SerializeToString(), [], "event.missing_id"),
        (b"\x08\x01", [(EVENT_TYPE_HEADER, b"npo.events.v1.ConsentEvent")], "event.wrong_type"),
    ],
)
def test_invalid_records_have_stable_codes(
    value: bytes | None, headers: list[tuple[str, bytes]], code: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(AccessEvent, value, headers)
    assert caught.value.code == code


def test_every_event_message_starts_with_meta() -> None:
    for message in (AccessEvent, ConsentEvent, EngagementUpdate):
        assert message.DESCRIPTOR.fields_by_number[1].name == "meta"


def test_topics_are_versioned_and_unique() -> None:
    names = [t.name for t in ALL_TOPICS]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"npo\.[a-z.]+\.v[1-9][0-9]*", n) for n in names)
    assert all(t.dead_letter == f"{t.name}.dlq" for t in ALL_TOPICS)


def test_generated_contracts_are_current() -> None:
    """`make proto` output is committed; this fails when proto/ changed without regenerating."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--check"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
