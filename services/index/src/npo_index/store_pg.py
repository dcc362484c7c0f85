"""The IndexStore in PostgreSQL: one transaction per batch, array (unnest) reads and writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from npo_platform.db import apply_migrations, create_pool

from .domain import Identity, Record, Transaction, Version, apply_all
from .store import (
    CoverageCount,
    FindQuery,
    IncomingEvent,
    OutboxBatch,
    OutboxBuilder,
    OutboxMessage,
    coverage_deltas,
    first_occurrences,
)

MIGRATIONS = "npo_index.migrations"
_IDENTITY_COLUMNS = (
    "patient", "service_domain", "categorization", "logical_address",
    "business_object_instance_identifier", "clinical_process_interest_id",
    "source_system", "data_controller", "owner",
)
_COLUMNS = (
    "key", *_IDENTITY_COLUMNS, "most_recent_content", "deleted",
    "version_time", "version_content", "version_event", "creation_time", "update_time",
)
_TYPES = (
    "bytea", *("text",) * 10, "boolean", "timestamptz", "text", "text", "timestamptz", "timestamptz",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM engagements"  # noqa: S608 - constant column names
_MARK = (
    "INSERT INTO processed_events (event_id) SELECT unnest($1::text[])"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)
# By patient first: a plan that always walks the primary key (a join with unnest() may turn
# into a sequential scan while the statistics still describe a small table).
_LOCK = (
    f"{_SELECT} WHERE patient = ANY($1::text[]) AND key = ANY($2::bytea[])"
    " ORDER BY patient, service_domain, key FOR UPDATE"
)
_UPSERT = (
    f"INSERT INTO engagements ({', '.join(_COLUMNS)}) SELECT * FROM unnest("  # noqa: S608
    + ", ".join(f"${i}::{t}[]" for i, t in enumerate(_TYPES, start=1))
    + ") ON CONFLICT (patient, service_domain, key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[10:])
    # Guard for a partition handled twice during a rebalance: never let an older version win.
    + " WHERE (engagements.version_time, engagements.version_content, engagements.version_event)"
    " < (excluded.version_time, excluded.version_content, excluded.version_event)"
)
_OUTBOX = (
    "INSERT INTO outbox (event_ids, message_keys, payloads) VALUES ($1::text[], $2::text[], $3::bytea[])"
    " RETURNING seq"
)
_COUNTS = (
    "INSERT INTO coverage_counts AS c (data_controller, service_domain, categorization, live)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[])"
    " ON CONFLICT (data_controller, service_domain, categorization)"
    " DO UPDATE SET live = c.live + excluded.live"
)


class PostgresIndexStore:
    """The index in a service-owned schema (``npo_index`` by default)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, database_url: str, *, schema: str, max_size: int = 10) -> PostgresIndexStore:
        pool = await create_pool(database_url, schema=schema, max_size=max_size)
        await apply_migrations(pool, schema=schema, package=MIGRATIONS)
        return cls(pool)

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def close(self) -> None:
        await self._pool.close()

    async def apply_batch(
        self, events: Sequence[IncomingEvent], outbox: OutboxBuilder
    ) -> OutboxBatch | None:
        unique = first_occurrences(events)
        async with self._pool.acquire() as conn, conn.transaction():
            marked = {row[0] for row in await conn.fetch(_MARK, [e.event_id for e in unique])}
            transactions = [tx for e in unique if e.event_id in marked for tx in e.transactions]
            if not transactions:
                return None
            current = await _locked(conn, transactions)
            written, changes = apply_all(current, transactions)
            messages = outbox(changes)
            return await _write(conn, list(written.values()), messages, coverage_deltas(changes))

    async def find(self, query: FindQuery) -> list[Record]:
        sql, args = _find_sql(query)
        async with self._pool.acquire() as conn:
            return [_record(row) for row in await conn.fetch(sql, *args)]

    async def coverage(self) -> list[CoverageCount]:
        sql = (
            "SELECT data_controller, service_domain, categorization, live FROM coverage_counts"
            " WHERE live > 0 ORDER BY 1, 2, 3"
        )
        async with self._pool.acquire() as conn:
            return [CoverageCount(*row) for row in await conn.fetch(sql)]

    async def pending_outbox(self, limit: int = 100) -> list[OutboxBatch]:
        sql = "SELECT seq, event_ids, message_keys, payloads FROM outbox ORDER BY seq LIMIT $1"
        async with self._pool.acquire() as conn:
            return [
                OutboxBatch(row[0], [OutboxMessage(*m) for m in zip(*row[1:], strict=True)])
                for row in await conn.fetch(sql, limit)
            ]

    async def remove_outbox(self, seqs: Sequence[int]) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", list(seqs))

    async def records(self) -> list[Record]:
        async with self._pool.acquire() as conn:
            return [_record(row) for row in await conn.fetch(f"{_SELECT} ORDER BY key")]


async def _locked(conn: Any, transactions: list[Transaction]) -> dict[bytes, Record]:
    """The stored rows the transactions touch, locked until the end of the transaction."""
    patients = sorted({tx.identity.patient for tx in transactions})
    keys = list({tx.key for tx in transactions})
    return {row["key"]: _record(row) for row in await conn.fetch(_LOCK, patients, keys)}


async def _write(
    conn: Any, records: list[Record], messages: list[OutboxMessage], deltas: dict[tuple[str, str, str], int]
) -> OutboxBatch | None:
    if records:
        await conn.execute(_UPSERT, *_columns(records))
    batch = None
    if messages:
        seq = await conn.fetchval(
            _OUTBOX, [m.event_id for m in messages], [m.key for m in messages], [m.payload for m in messages]
        )
        batch = OutboxBatch(seq, messages)
    groups = sorted(group for group, delta in deltas.items() if delta)  # fixed lock order
    if groups:
        controllers, domains, categorizations = (list(column) for column in zip(*groups, strict=True))
        await conn.execute(_COUNTS, controllers, domains, categorizations, [deltas[g] for g in groups])
    return batch


def _columns(records: list[Record]) -> list[list[Any]]:
    rows = [
        (
            r.key, *r.identity.parts(), r.most_recent_content, r.deleted,
            r.version.event_time, r.version.most_recent_content, r.version.event_id,
            r.creation_time, r.update_time,
        )
        for r in records
    ]
    return [list(column) for column in zip(*rows, strict=True)]


def _record(row: asyncpg.Record) -> Record:
    return Record(
        key=bytes(row["key"]),
        identity=Identity(*(row[c] for c in _IDENTITY_COLUMNS)),
        most_recent_content=row["most_recent_content"],
        deleted=row["deleted"],
        version=Version(row["version_time"], row["version_content"], row["version_event"]),
        creation_time=row["creation_time"],
        update_time=row["update_time"],
    )


def _find_sql(query: FindQuery) -> tuple[str, list[Any]]:
    args: list[Any] = [query.patient, query.service_domain]
    where = ["NOT deleted", "patient = $1", "service_domain = $2"]
    for name, value in query.exact_filters().items():  # names come from FindQuery, not the caller
        args.append(value)
        where.append(f"{name} = ${len(args)}")
    if query.most_recent_content_from is not None:
        args.append(query.most_recent_content_from)
        where.append(f"most_recent_content >= ${len(args)}")
    if query.after_key is not None:
        args.append(query.after_key)
        where.append(f"key > ${len(args)}")
    args.append(query.limit)
    sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY key LIMIT ${len(args)}"
    return sql, args
