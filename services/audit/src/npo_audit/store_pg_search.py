"""Read side of the log in PostgreSQL: compliance search, flags, the patient's extract, the
operator's search statistics (the monthly rollup)."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

import asyncpg

from .domain import Record
from .store import Cursor, FlagRow, Found, Position, SearchFilter
from .store_pg import row_record
from .store_pg_fhir import find

if TYPE_CHECKING:
    from .fhir_search_params import AuditEventSearch


def _where(f: SearchFilter, cursor: Cursor | None) -> tuple[str, list[Any]]:
    clauses: list[str] = ["r.kind = $1"]
    args: list[Any] = [f.kind]
    exact = [("r.patient_id", f.patient_id), ("r.user_hsa_id", f.user_hsa_id),
             ("r.care_unit", f.care_unit), ("r.care_giver", f.care_giver),
             ("r.basis", f.basis), ("r.outcome", f.outcome), ("r.event_id", f.event_id)]
    for column, value in exact:
        if value is not None:
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
    if f.time_from is not None:
        args.append(f.time_from)
        clauses.append(f"r.event_time >= ${len(args)}")
    if f.time_to is not None:
        args.append(f.time_to)
        clauses.append(f"r.event_time < ${len(args)}")
    if f.rule is not None:
        args.append(f.rule)
        clauses.append(
            "EXISTS (SELECT 1 FROM flag g WHERE g.event_id = r.event_id"  # noqa: S608 (only $n)
            f" AND g.event_time = r.event_time AND g.rule = ${len(args)})"
        )
    if cursor is not None:
        args.extend([cursor.event_time, cursor.event_id])
        clauses.append(f"(r.event_time, r.event_id) < (${len(args) - 1}, ${len(args)})")
    return " AND ".join(clauses), args


# The reader column is one of two fixed names (searches); the months are parameters.
SEARCHES = """
SELECT month, {reader} AS reader, sum(searches)::bigint AS searches, sum(answered)::bigint AS answered
FROM search_counts
WHERE month >= $1 AND month < $2
GROUP BY GROUPING SETS ((month), ({reader}), (month, {reader}))
"""


class AuditQueries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        """The read side's pool (tests count rows through it)."""
        return self._pool

    async def audit_events(self, search: AuditEventSearch, position: Position) -> Found:
        return await find(self._pool, search, position)

    async def search(self, f: SearchFilter, limit: int, cursor: Cursor | None = None) -> list[Record]:
        where, args = _where(f, cursor)
        args.append(limit)
        rows = await self._pool.fetch(
            f"SELECT r.* FROM record r WHERE {where}"  # noqa: S608 (clauses are fixed text)
            f" ORDER BY r.event_time DESC, r.event_id DESC LIMIT ${len(args)}", *args
        )
        return [row_record(row) for row in rows]

    async def flags_of(self, event_ids: list[str]) -> dict[str, list[str]]:
        rows = await self._pool.fetch(
            "SELECT event_id, rule FROM flag WHERE event_id = ANY($1::text[]) ORDER BY rule", event_ids
        )
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row["event_id"], []).append(row["rule"])
        return found

    async def extract(self, patient_id: str, limit: int, cursor: Cursor | None) -> list[Record]:
        return await self.search(SearchFilter(patient_id=patient_id), limit, cursor)

    async def flags(self, rule: str | None, time_from: datetime | None, time_to: datetime | None,
                    limit: int, after_id: int = 0, reviewed: bool | None = None) -> list[FlagRow]:
        """Flags in id order; ``reviewed`` False: the sample-check queue (not yet followed up)."""
        rows = await self._pool.fetch(
            "SELECT * FROM (SELECT g.*, EXISTS (SELECT 1 FROM record v WHERE v.kind = 'review'"
            "   AND v.subject IN (g.event_id, 'flag:' || g.flag_id)) AS reviewed FROM flag g"
            " WHERE ($1::text IS NULL OR g.rule = $1)"
            " AND ($2::timestamptz IS NULL OR g.event_time >= $2)"
            " AND ($3::timestamptz IS NULL OR g.event_time < $3) AND g.flag_id > $4) f"
            " WHERE ($6::boolean IS NULL OR f.reviewed = $6)"
            " ORDER BY f.flag_id LIMIT $5", rule, time_from, time_to, after_id, limit, reviewed,
        )
        return [FlagRow(r["flag_id"], r["rule"], r["event_id"], r["event_time"], r["patient_id"],
                        r["user_hsa_id"], r["care_unit"], r["detail"], r["reviewed"]) for r in rows]

    async def find(self, event_id: str) -> Record | None:
        row = await self._pool.fetchrow("SELECT * FROM record WHERE event_id = $1 LIMIT 1", event_id)
        return row_record(row) if row else None

    async def chain_range(self, chain: str, after_seq: int, to_seq: int) -> list[Record]:
        rows = await self._pool.fetch(
            "SELECT * FROM record WHERE chain = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
            chain, after_seq, to_seq,
        )
        return [row_record(row) for row in rows]

    async def searches(self, start: date, end: date,
                       reader: Literal["care_giver", "care_unit"]) -> list[Any]:
        """The rollup over [start, end): (month, reader, searches, answered) rows per month, per
        reader organisation and per both (``GROUPING SETS``; None where a row sums over it)."""
        column = {"care_giver": "care_giver", "care_unit": "care_unit"}[reader]
        rows: list[Any] = await self._pool.fetch(SEARCHES.format(reader=column), start, end)
        return rows

    async def heads(self) -> dict[str, int]:
        """Every chain's last sequence number (where the live stream starts)."""
        rows = await self._pool.fetch("SELECT chain, seq FROM chain_head")
        return {row["chain"]: row["seq"] for row in rows}
