"""HTTP: who read the log. Every answered read of it (a compliance search, export, stream, flag
search or FHIR search, the operator's statistics, and the list below) is committed as one
``log_read`` row before its answer leaves; when that fails the reader gets a 503 problem, not the
data (the platform's rule for record reads, applied to the log's own readers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from npo_platform.identity import Claims, ComplianceOfficerClaims, HsaIdStr
from npo_platform.problems import Problem
from npo_platform.schemas import RequestModel

from .store import LogRead, ReadLog, ReadNotRecorded

NOT_RECORDED = "Your read of the log could not be recorded, so nothing is returned."
_MAX_ID = 2**63 - 1  # a bigint read id


class ReadAction(StrEnum):
    SEARCH = "search"
    EXPORT = "export"
    STREAM = "stream"
    FLAGS = "flags.search"
    FHIR_SEARCH = "fhir.search"
    STATISTICS = "statistics.searches"
    LOG_READS = "log_reads.search"


def read_log(request: Request) -> ReadLog:
    found: ReadLog = request.app.state.audit.reads
    return found


Reads = Annotated[ReadLog, Depends(read_log)]


async def record_read(reads: ReadLog, reader: Claims, action: ReadAction, given: Mapping[str, Any],
                      returned: int | None) -> None:
    """Commit the read before it is answered; a 503 problem (``audit.unavailable``) otherwise."""
    read = LogRead(reader.sub, reader.care_unit or "", reader.care_giver or "", action.value,
                   dict(given), returned)
    try:
        await reads.record(read)
    except ReadNotRecorded:
        raise Problem(503, "audit.unavailable", NOT_RECORDED) from None


def given(body: RequestModel, **extra: str) -> dict[str, Any]:
    """The request as the reader gave it, for their read's row (never a log line)."""
    return {**body.model_dump(mode="json", exclude_unset=True), **extra}


class LogReadSearch(RequestModel):
    user_hsa_id: HsaIdStr | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = Field(None, max_length=20)


def _before(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not (cursor.isascii() and cursor.isdigit()) or not 0 < int(cursor) <= _MAX_ID:
        raise Problem(422, "cursor.invalid", "The cursor is not one this service issued.")
    return int(cursor)


def _view(read: LogRead) -> dict[str, Any]:
    return {**asdict(read), "read_at": read.read_at.isoformat() if read.read_at else None}


router = APIRouter(prefix="/audit", tags=["audit"])


@router.post("/log-reads/search")
async def search_log_reads(
    body: LogReadSearch, reads: Reads, officer: ComplianceOfficerClaims
) -> dict[str, Any]:
    """Who read the log, newest first (``next_cursor`` continues): the officer, care unit and
    care giver of the token, the action, the request as given and how many records it returned.
    Reading this list is itself a read of the log and is recorded as one (``log_reads.search``)."""
    found = await reads.search(body.user_hsa_id, body.time_from, body.time_to, body.limit,
                               _before(body.cursor))
    await record_read(reads, officer, ReadAction.LOG_READS, given(body), len(found))
    return {"items": [_view(r) for r in found],
            "next_cursor": str(found[-1].read_id) if len(found) == body.limit else None}
