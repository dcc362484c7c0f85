"""HTTP: search statistics for the operator view, overview reads per month and per reader
organisation.

A *search* is an access record of a read (``READ``, or ``EMERGENCY_OPEN``): what the query
service writes for every overview request, allowed or not (``domain.search_counts``). The writer
adds each batch's searches to a monthly rollup, ``search_counts`` (month, care giver, care
unit, migration 0003), in the batch's own transaction, so the rollup is exact; this endpoint reads
only the rollup (one ``GROUP BY GROUPING SETS`` over a bounded range of whole months, UTC, as the
log's partitions), never the log. Only organisations and counts leave: no patient, no user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from npo_platform.identity import Claims, Role, require_roles
from npo_platform.problems import Problem

from .api import Services
from .api_reads import ReadAction, record_read
from .store import AuditSearch

MAX_MONTHS = 60  # the log is kept five years
Reader = Literal["care_giver", "care_unit"]
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

router = APIRouter(prefix="/audit/statistics", tags=["statistics"])
OperatorOrAdmin = Annotated[Claims, Depends(require_roles(Role.OPERATOR, Role.ADMIN))]


class Count(BaseModel):
    searches: int
    answered: int  # outcome allowed or partial: something was shown


class MonthCount(Count):
    month: str  # YYYY-MM


class ReaderCount(Count):
    reader: str  # HSA-id of the reader's care giver or care unit


class MonthReaderCount(ReaderCount):
    month: str


class SearchStatistics(BaseModel):
    from_month: str
    to_month: str  # inclusive
    reader: Reader
    months: list[MonthCount]  # every month of the range, zeros included
    readers: list[ReaderCount]  # totals over the range, most searches first
    by_month: list[MonthReaderCount]


@dataclass(frozen=True)
class MonthRange:
    start: datetime  # first instant of the first month
    end: datetime  # first instant after the last month

    @property
    def months(self) -> list[str]:
        found, year, month = [], self.start.year, self.start.month
        while (year, month) < (self.end.year, self.end.month):
            found.append(f"{year:04d}-{month:02d}")
            year, month = (year, month + 1) if month < 12 else (year + 1, 1)
        return found


def month_range(from_month: str | None, to_month: str | None, now: datetime) -> MonthRange:
    """``from``..``to`` inclusive (default: the twelve months up to now); at most MAX_MONTHS."""
    last = _month(to_month) if to_month else datetime(now.year, now.month, 1, tzinfo=UTC)
    first = _month(from_month) if from_month else _shift(last, -11)
    span = (last.year - first.year) * 12 + last.month - first.month + 1
    if span < 1 or span > MAX_MONTHS:
        raise Problem(422, "statistics.range", f"Give 1 to {MAX_MONTHS} months, from before to.")
    return MonthRange(first, _shift(last, 1))


def _month(text: str) -> datetime:
    match = _MONTH.fullmatch(text)
    if match is None:
        raise Problem(422, "statistics.month", "Months are written YYYY-MM.")
    return datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)


def _shift(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


async def count_searches(queries: AuditSearch, span: MonthRange, reader: Reader) -> SearchStatistics:
    rows = await queries.searches(span.start.date(), span.end.date(), reader)
    months = {m: MonthCount(month=m, searches=0, answered=0) for m in span.months}
    readers: list[ReaderCount] = []
    by_month: list[MonthReaderCount] = []
    for row in rows:
        counts = {"searches": row["searches"], "answered": row["answered"]}
        label = f"{row['month']:%Y-%m}" if row["month"] is not None else None
        if label is not None and row["reader"] is None:
            months[label] = MonthCount(month=label, **counts)
        elif label is None:
            readers.append(ReaderCount(reader=row["reader"], **counts))
        else:
            by_month.append(MonthReaderCount(month=label, reader=row["reader"], **counts))
    readers.sort(key=lambda r: (-r.searches, r.reader))
    by_month.sort(key=lambda r: (r.month, r.reader))
    return SearchStatistics(from_month=span.months[0], to_month=span.months[-1], reader=reader,
                            months=list(months.values()), readers=readers, by_month=by_month)


@router.get("/searches")
async def searches(
    svc: Services, asker: OperatorOrAdmin,
    from_month: Annotated[str | None, Query(alias="from", description="YYYY-MM (UTC)")] = None,
    to_month: Annotated[str | None, Query(alias="to", description="YYYY-MM, inclusive")] = None,
    reader: Annotated[Reader, Query(description="group readers by care giver or care unit")] = "care_giver",
) -> SearchStatistics:
    """Searches (overview reads) per month and per reader organisation, over whole months;
    recorded as a read of the log (returned: one per month and organisation)."""
    span = month_range(from_month, to_month, datetime.now(UTC))
    found = await count_searches(svc.queries, span, reader)
    given = {"from": from_month, "to": to_month, "reader": reader}
    await record_read(svc.reads, asker, ReadAction.STATISTICS,
                      {k: v for k, v in given.items() if v is not None}, len(found.by_month))
    return found
