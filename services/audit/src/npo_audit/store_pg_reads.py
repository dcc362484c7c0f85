"""Who read the log, in PostgreSQL (``log_read``, migration 0004): append-only, one row per
answered read, committed before the answer leaves."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import asyncpg

from .store import LogRead, ReadNotRecorded

log = logging.getLogger(__name__)
_COLUMNS = "user_hsa_id, care_unit, care_giver, action, filter, returned"


def _storable(value: Any) -> Any:
    """The filter without what jsonb cannot hold (NUL, a lone surrogate), each shown as a
    replacement character: a FHIR search may ignore a parameter (lenient handling) that no request
    model checked, and a refused insert would refuse the read."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


class PostgresReadLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, read: LogRead) -> None:
        """One autocommitted INSERT: when it returns, the row is durable."""
        try:
            await self._pool.execute(
                f"INSERT INTO log_read ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5::jsonb, $6)",  # noqa: S608
                read.user_hsa_id, read.care_unit, read.care_giver, read.action,
                json.dumps(_storable(read.filter), ensure_ascii=False), read.returned,
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
            # The class and SQLSTATE only: a message could quote the filter (a patient's number).
            log.error("a read of the log could not be recorded: %s %s", type(error).__name__,
                      getattr(error, "sqlstate", ""))
            raise ReadNotRecorded from None

    async def search(self, user_hsa_id: str | None, time_from: datetime | None,
                     time_to: datetime | None, limit: int, before_id: int | None) -> list[LogRead]:
        rows = await self._pool.fetch(
            f"SELECT read_id, read_at, {_COLUMNS} FROM log_read"  # noqa: S608 (fixed text)
            " WHERE ($1::text IS NULL OR user_hsa_id = $1)"
            " AND ($2::timestamptz IS NULL OR read_at >= $2) AND ($3::timestamptz IS NULL OR read_at < $3)"
            " AND ($4::bigint IS NULL OR read_id < $4)"
            " ORDER BY read_id DESC LIMIT $5", user_hsa_id, time_from, time_to, before_id, limit,
        )
        return [LogRead(r["user_hsa_id"], r["care_unit"], r["care_giver"], r["action"],
                        json.loads(r["filter"]), r["returned"], r["read_id"], r["read_at"]) for r in rows]
