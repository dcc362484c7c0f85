"""The IndexStore in PostgreSQL: one transaction per batch, array (unnest) reads and writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from npo_platform.db import apply_migrations, create_pool
from npo_platform.kafka import SerializedEvent
from npo_platform.outbox import Publish

from .domain import (
    Applied,
    Change,
    CoverageCount,
    Identity,
    Record,
    Transaction,
    Version,
    coverage_deltas,
)
from .store import (
    FindQuery,
    IncomingEvent,
    OutboxBatch,
    OutboxBuilder,
    first_occurrences,
    relay_outbox,
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
_CREATED, _UPDATED, _DELETED = 1, 2, 3  # change codes the apply statement returns
_CHANGES = {_CREATED: Change.CREATED, _UPDATED: Change.CONTENT_UPDATED, _DELETED: Change.DELETED}
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM engagements"  # noqa: S608 - constant column names
# The freshness rule of domain.apply, set-based: one statement writes a layer of transactions
# (each key at most once) and returns only the real changes. ``old``/``new`` in RETURNING
# (PostgreSQL 18) are the row before and after; a stale or duplicate transaction fails the
# WHERE and returns nothing. A delete keeps the stored content; a record created again after
# its tombstone gets a new creation time; creation/update times are the event time (vt).
# Per-connection staging table for a batch's transactions (binary COPY: no per-value parameter
# checks), emptied at each commit; ``layer`` numbers the occurrences of a key within the batch.
_STAGE = "engagement_stage"
_STAGE_COLUMNS = (
    "layer", "key", *_IDENTITY_COLUMNS, "most_recent_content", "deleted", "version_time", "version_event",
)
_CREATE_STAGE = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (layer integer, key bytea,"
    + "".join(f" {c} text," for c in _IDENTITY_COLUMNS)
    + " most_recent_content text, deleted boolean, version_time timestamptz, version_event text)"
    " ON COMMIT DELETE ROWS"
)
# The freshness rule of domain.apply, set-based: one statement writes a layer of transactions
# (each key at most once) and returns only the real changes. ``old``/``new`` in RETURNING
# (PostgreSQL 18) are the row before and after; a stale or duplicate transaction fails the
# WHERE and returns nothing. A delete keeps the stored content; a record created again after
# its tombstone gets a new creation time; creation and update times are the event time.
_APPLY = (
    f"WITH written AS (INSERT INTO engagements AS e ({', '.join(_COLUMNS)})"  # noqa: S608 - constants
    f" SELECT key, {', '.join(_IDENTITY_COLUMNS)}, most_recent_content, deleted, version_time,"
    f" most_recent_content, version_event, version_time, version_time FROM {_STAGE} WHERE layer = $1"
    " ORDER BY patient, service_domain, key"  # one lock order for every writer (rebalances overlap)
    " ON CONFLICT (patient, service_domain, key) DO UPDATE SET"
    " most_recent_content = CASE WHEN excluded.deleted THEN e.most_recent_content"
    " ELSE excluded.most_recent_content END,"
    " deleted = excluded.deleted, version_time = excluded.version_time,"
    " version_content = excluded.version_content, version_event = excluded.version_event,"
    " creation_time = CASE WHEN e.deleted AND NOT excluded.deleted THEN excluded.creation_time"
    " ELSE e.creation_time END,"
    " update_time = excluded.update_time"
    " WHERE (e.version_time, e.version_content, e.version_event)"
    " < (excluded.version_time, excluded.version_content, excluded.version_event)"
    " RETURNING new.key, CASE"
    f" WHEN old.key IS NULL THEN CASE WHEN new.deleted THEN 0 ELSE {_CREATED} END"
    f" WHEN old.deleted AND NOT new.deleted THEN {_CREATED}"
    f" WHEN NOT old.deleted AND new.deleted THEN {_DELETED}"
    f" WHEN NOT old.deleted AND old.most_recent_content <> new.most_recent_content THEN {_UPDATED}"
    " ELSE 0 END AS change,"
    # Only what differs from the transaction's own values (fewer values to decode):
    # a delete keeps the stored content, an update keeps the stored creation time.
    " CASE WHEN new.deleted THEN new.most_recent_content END AS kept_content,"
    " CASE WHEN new.creation_time <> new.update_time THEN new.creation_time END AS kept_creation)"
    " SELECT * FROM written WHERE change > 0"
)
# Ids and keys travel as one string each (text arrays cost a type check per element in the
# driver); neither ever holds the separator: ids are UUIDs, keys validated patient ids.
_OUTBOX = (
    "INSERT INTO outbox (event_ids, message_keys, payloads)"
    " VALUES (string_to_array($1::text, E'\\x1f'), string_to_array($2::text, E'\\x1f'), $3::bytea[])"
    " RETURNING seq"
)
_SEPARATOR = "\x1f"
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
        pool = await create_pool(database_url, schema=schema, max_size=max_size, init=_create_stage)
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
        transactions = [tx for e in first_occurrences(events) for tx in e.transactions]
        if not transactions:
            return None
        async with self._pool.acquire() as conn, conn.transaction():
            changes = await _apply(conn, transactions)
            messages = outbox(changes)
            return await _write(conn, messages, coverage_deltas(changes))

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
                OutboxBatch(row[0], [SerializedEvent(*m) for m in zip(*row[1:], strict=True)])
                for row in await conn.fetch(sql, limit)
            ]

    async def remove_outbox(self, seqs: Sequence[int]) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", list(seqs))

    async def relay(self, publish: Publish, limit: int = 100) -> int:
        return await relay_outbox(self, publish, limit)

    async def records(self) -> list[Record]:
        async with self._pool.acquire() as conn:
            return [_record(row) for row in await conn.fetch(f"{_SELECT} ORDER BY key")]


async def _create_stage(conn: asyncpg.Connection) -> None:
    await conn.execute(_CREATE_STAGE)


async def _apply(conn: Any, transactions: list[Transaction]) -> list[Applied]:
    """Write the transactions with the freshness rule in SQL; the real changes in their order.

    A key that occurs several times in the batch is written once per *layer* (its first
    occurrences, then its second ones...), so each statement touches a row at most once and
    every key sees its transactions in order: the same rows and changes as ``domain.apply_all``.
    """
    rows, layers = _staged(transactions)
    await conn.copy_records_to_table(_STAGE, records=rows, columns=_STAGE_COLUMNS)
    changes: list[tuple[int, Applied]] = []
    for depth, ordinals in enumerate(layers):
        for key, change, kept_content, kept_creation in await conn.fetch(_APPLY, depth):
            ordinal = ordinals[key]
            tx = transactions[ordinal]
            kind = _CHANGES[change]
            at = tx.version.event_time
            content = tx.most_recent_content if kept_content is None else kept_content
            created = at if kept_creation is None else kept_creation
            record = Record(key, tx.identity, content, kind is Change.DELETED, tx.version, created, at)
            changes.append((ordinal, Applied(record, kind, tx)))
    changes.sort(key=_first)
    return [applied for _, applied in changes]


def _first(item: tuple[int, Applied]) -> int:
    return item[0]


def _staged(transactions: list[Transaction]) -> tuple[list[tuple[Any, ...]], list[dict[bytes, int]]]:
    """The staging rows, and per layer the ordinal of each key's transaction in that layer."""
    rows: list[tuple[Any, ...]] = []
    layers: list[dict[bytes, int]] = [{}]
    depth_of: dict[bytes, int] = {}
    append = rows.append
    for ordinal, tx in enumerate(transactions):
        key = tx.key
        if key in depth_of:
            depth = depth_of[key] = depth_of[key] + 1
            if depth == len(layers):
                layers.append({})
        else:
            depth = depth_of[key] = 0
        layers[depth][key] = ordinal
        version = tx.version
        append((depth, key, *tx.identity.parts(), tx.most_recent_content, tx.delete,
                version.event_time, version.event_id))
    return rows, layers


async def _write(
    conn: Any, messages: list[SerializedEvent], deltas: dict[tuple[str, str, str], int]
) -> OutboxBatch | None:
    batch = None
    if messages:
        ids, keys = _joined([m.event_id for m in messages]), _joined([m.key for m in messages])
        seq = await conn.fetchval(_OUTBOX, ids, keys, [m.payload for m in messages])
        batch = OutboxBatch(seq, messages)
    groups = sorted(group for group, delta in deltas.items() if delta)  # fixed lock order
    if groups:
        controllers, domains, categorizations = (list(column) for column in zip(*groups, strict=True))
        await conn.execute(_COUNTS, controllers, domains, categorizations, [deltas[g] for g in groups])
    return batch


def _joined(values: list[str]) -> str:
    text = _SEPARATOR.join(values)
    if text.count(_SEPARATOR) != len(values) - 1:
        raise ValueError("an outbox event id or key holds the separator")
    return text


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
    args: list[Any] = [query.patient, list(query.service_domains)]
    where = ["NOT deleted", "patient = $1", "service_domain = ANY($2::text[])"]
    for name, value in query.exact_filters().items():  # names come from FindQuery, not the caller
        args.append(value)
        where.append(f"{name} = ${len(args)}")
    if query.most_recent_content_from is not None:
        args.append(query.most_recent_content_from)
        where.append(f"most_recent_content >= ${len(args)}")
    if query.after is not None:
        args += query.after
        where.append(f"(service_domain, key) > (${len(args) - 1}, ${len(args)})")
    args.append(query.limit)
    order = "ORDER BY service_domain, key"  # the primary key's order after patient
    sql = f"{_SELECT} WHERE {' AND '.join(where)} {order} LIMIT ${len(args)}"
    return sql, args
