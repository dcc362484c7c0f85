"""Exports of the log as CSV, JSON lines or a FHIR Bundle, rendered whole before the first byte.

Every page is read and rendered into a spooled file (memory, then disk past a few MiB) before
the answer starts, so an export that fails midway (a bad cursor, the database gone, a record
with no FHIR form) is answered as a problem, never as a 200 cut off in the middle; only reading
the finished file back is streamed.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import IO, Literal

from npo_platform.fhir import FHIR_JSON, entry
from npo_platform.problems import Problem

from . import fhir
from .api_views import encode_cursor, record_view, to_csv_rows
from .domain import Record

Format = Literal["csv", "json", "fhir"]
MEDIA_TYPES: dict[str, str] = {"csv": "text/csv", "json": "application/x-ndjson", "fhir": FHIR_JSON}
PAGE = 1000
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_CHUNK = 64 * 1024
Page = Callable[[str | None], Awaitable[tuple[list[Record], dict[str, list[str]]]]]


async def render(page: Page, first_cursor: str | None, kind: Format, limit: int) -> tuple[IO[bytes], int]:
    """Every record ``page`` yields (from ``first_cursor``) rendered in ``kind``, and how many; the
    file is rewound. Raises before anything is sent when any part fails or more than ``limit`` match."""
    out = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115 - closed by stream()
    try:
        written = await _write(out, page, first_cursor, kind, limit)
    except fhir.NotAuditEvent as error:
        out.close()
        raise Problem(422, "export.no_fhir_form", str(error)) from None
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out, written


async def _write(out: IO[bytes], page: Page, cursor: str | None, kind: Format, limit: int) -> int:
    if kind == "fhir":
        head = {"resourceType": "Bundle", "type": "collection", "timestamp": datetime.now(UTC).isoformat()}
        out.write(json.dumps(head)[:-1].encode())  # the entries follow, when there are any
    sent = 0
    while True:
        records, flags = await page(cursor)
        if sent + len(records) > limit:  # a cut-off export would pass for the whole log
            raise Problem(422, "export.too_large",
                          f"More than {limit} records match: narrow the search (a shorter period, "
                          "one patient or one user) and export each part.")
        if kind == "csv":
            views = (record_view(r, flags.get(r.entry.event_id, ())) for r in records)
            out.write(to_csv_rows(views, header=sent == 0).encode())
        elif kind == "json":
            out.write("".join(json.dumps(record_view(r, flags.get(r.entry.event_id, ()))) + "\n"
                              for r in records).encode())
        else:
            parts = [json.dumps(entry(fhir.audit_event(r))) for r in records]
            if parts:
                out.write(("," if sent else ',"entry":[').encode() + ",".join(parts).encode())
        sent += len(records)
        if len(records) < PAGE:
            break
        cursor = encode_cursor(records[-1])
    if kind == "fhir":
        out.write(b"]}" if sent else b"}")  # FHIR's JSON has no empty arrays
    return sent


def stream(rendered: IO[bytes]) -> Iterator[bytes]:
    """The rendered export in chunks; closes it at the end."""
    try:
        while chunk := rendered.read(_CHUNK):
            yield chunk
    finally:
        rendered.close()
