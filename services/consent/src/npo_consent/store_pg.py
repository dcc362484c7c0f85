"""The ConsentStore in PostgreSQL (schema ``consent``), all of the service's SQL: state rows and
their outbox in one transaction, the checked accesses and their violations."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from npo_platform.contracts import ConsentEvent
from npo_platform.db import apply_migrations, create_pool

from .domain import Kind, PatientState, Record
from .domain_checks import Violation
from .store import EventFor, Publish

MIGRATIONS = "npo_consent.migrations"
# One relay at a time across replicas keeps each patient's events in order.
_RELAY_LOCK = 0x4E504F436F6E7331  # "NPOConsn1"

_COLUMNS = (
    "id, kind, patient_id, care_giver, care_unit, user_hsa_id, block_id, reason, valid_from,"
    " valid_to, registered_at, registered_by, revoked_at"
)


async def open_store(database_url: str, schema: str, max_size: int = 10) -> PostgresConsentStore:
    """Migrate ``schema`` (waiting for a starting server) and return a store on a pool pinned to it."""
    await apply_migrations(database_url, schema=schema, package=MIGRATIONS)
    pool = await create_pool(database_url, schema=schema, max_size=max_size)
    return PostgresConsentStore(pool)


def _record(row: Any) -> Record:
    return Record(
        id=str(row["id"]), kind=Kind(row["kind"]), patient_id=row["patient_id"],
        care_giver=row["care_giver"], care_unit=row["care_unit"], user=row["user_hsa_id"],
        block_id=str(row["block_id"]) if row["block_id"] else None, reason=row["reason"],
        valid_from=row["valid_from"], valid_to=row["valid_to"],
        registered_at=row["registered_at"], registered_by=row["registered_by"],
        revoked_at=row["revoked_at"],
    )


class PostgresConsentStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def close(self) -> None:
        await self.pool.close()

    async def load_patient(self, patient_id: str) -> PatientState:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM records WHERE patient_id = $1", patient_id  # noqa: S608
        )
        return PatientState(tuple(_record(row) for row in rows))

    async def get(self, record_id: str) -> Record | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM records WHERE id = $1", uuid.UUID(record_id)  # noqa: S608
        )
        return None if row is None else _record(row)

    async def add(self, record: Record, event: ConsentEvent) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO records ({_COLUMNS})"  # noqa: S608
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                uuid.UUID(record.id), record.kind.value, record.patient_id, record.care_giver,
                record.care_unit, record.user, uuid.UUID(record.block_id) if record.block_id else None,
                record.reason, record.valid_from, record.valid_to, record.registered_at,
                record.registered_by, record.revoked_at,
            )
            await _to_outbox(conn, event)

    async def revoke(self, record_id: str, at: datetime, by: str, event: ConsentEvent) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "UPDATE records SET revoked_at = $2, revoked_by = $3"
                " WHERE id = $1 AND revoked_at IS NULL",
                uuid.UUID(record_id), at, by,
            )
            if status != "UPDATE 1":
                return False
            await _to_outbox(conn, event)
            return True

    async def add_event(self, event: ConsentEvent) -> None:
        await _to_outbox(self.pool, event)

    async def expire_due(self, now: datetime, event_for: EventFor, limit: int = 500) -> list[Record]:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM records"  # noqa: S608
                " WHERE valid_to IS NOT NULL AND valid_to <= $1 AND expired_at IS NULL"
                " AND revoked_at IS NULL ORDER BY valid_to LIMIT $2 FOR UPDATE SKIP LOCKED",
                now, limit,
            )
            expired = [_record(row) for row in rows]
            await conn.execute(
                "UPDATE records SET expired_at = $2 WHERE id = ANY($1::uuid[])",
                [uuid.UUID(r.id) for r in expired], now,
            )
            for record in expired:
                await _to_outbox(conn, event_for(record))
            return expired

    async def relay(self, publish: Publish, limit: int = 500) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK):
                return 0  # another replica is relaying; it will take these rows too
            rows = await conn.fetch(
                "SELECT id, payload FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1",
                limit,
            )
            if not rows:
                return 0
            await publish([ConsentEvent.FromString(row["payload"]) for row in rows])
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                [row["id"] for row in rows],
            )
            return len(rows)

    async def save_check(self, event_id: str, violations: Sequence[Violation]) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "INSERT INTO checked_access_events (event_id) VALUES ($1) ON CONFLICT DO NOTHING",
                event_id,
            )
            if status != "INSERT 0 1":
                return False
            await conn.executemany(
                "INSERT INTO violations (id, access_event_id, patient_id, user_hsa_id, care_unit,"
                " data_controller, engagement_unit, reason_code, access_time)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                [(uuid.uuid4(), v.access_event_id, v.patient_id, v.user, v.care_unit,
                  v.data_controller, v.engagement_unit, v.reason_code, v.access_time)
                 for v in violations],
            )
            return True

    async def violations(self, limit: int = 1000) -> list[Violation]:
        rows = await self.pool.fetch(
            "SELECT access_event_id, patient_id, user_hsa_id, care_unit, data_controller,"
            " engagement_unit, reason_code, access_time FROM violations"
            " ORDER BY detected_at, id LIMIT $1",
            limit,
        )
        return [
            Violation(r["access_event_id"], r["patient_id"], r["user_hsa_id"], r["care_unit"],
                      r["data_controller"], r["engagement_unit"], r["reason_code"], r["access_time"])
            for r in rows
        ]


async def _to_outbox(conn: Any, event: ConsentEvent) -> None:
    await conn.execute(
        "INSERT INTO outbox (event_id, patient_id, payload) VALUES ($1, $2, $3)",
        uuid.UUID(event.meta.event_id), event.patient_id, event.SerializeToString(),
    )
