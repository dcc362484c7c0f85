"""The log in PostgreSQL: the AuditStore's write side, all of its SQL (the read side is in
store_pg_search.py, the FHIR search's in store_pg_fhir.py, the live stream's LISTEN in
store_pg_live.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from .domain import Entry, Kind, Record, SearchKey, first_of_each_id, link, search_counts
from .domain_rules import (
    REFUSED,
    REFUSED_ATTEMPTS_PER_HOUR,
    WINDOW,
    Flag,
    Person,
    Relation,
    Rule,
    RuleBook,
    patient_limit_crossings,
    refusal_crossings,
    relation_keys,
)
from .signing import Checkpoint, CheckpointSigner
from .store import Appended

Crossings = Callable[[list[Entry], dict[str, list[datetime]]], list[Flag]]

RECORD_COLUMNS = (
    "chain", "seq", "kind", "event_id", "event_time", "recorded_at", "patient_id", "user_hsa_id",
    "care_unit", "care_giver", "activity", "basis", "outcome", "purpose", "categories", "payload",
    "subject", "prev_hash", "hash",
)
# Chains with records the sweep has not read yet, and how far it read them.
SWEEP_HEADS = """
SELECT h.chain, coalesce(p.seq, 0) AS done, h.seq AS head FROM chain_head h
LEFT JOIN sweep_position p ON p.chain = h.chain
WHERE h.chain LIKE $1 AND h.seq > coalesce(p.seq, 0)
"""
# Per user of the records not swept yet: the span of their event times.
SWEEP_USERS = """
SELECT r.user_hsa_id AS u, min(r.event_time) AS first, max(r.event_time) AS last
FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS k(chain, done, head)
JOIN record r ON r.chain = k.chain AND r.seq > k.done AND r.seq <= k.head
WHERE r.kind = $4 AND ($5::int IS NULL OR r.outcome = $5)
GROUP BY r.user_hsa_id
"""
# Those users' records of the rule's kind within the window around the span, and their flags.
SWEEP_RECORDS = """
SELECT r.* FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS k(u, first, last)
JOIN record r ON r.user_hsa_id = k.u AND r.event_time > k.first - $4::interval
    AND r.event_time <= k.last + $4::interval
WHERE r.kind = $5 AND ($6::int IS NULL OR r.outcome = $6)
"""
SWEEP_FLAGGED = """
SELECT f.user_hsa_id, f.event_time FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
    AS k(u, first, last)
JOIN flag f ON f.user_hsa_id = k.u AND f.rule = $4 AND f.event_time > k.first - 2 * $5::interval
    AND f.event_time <= k.last + $5::interval
"""

# The relations of a batch's (patient, care unit) pairs: one index probe per pair, whatever the
# planner believes. As a plain join, the custom plans a prepared statement starts with (five per
# connection, and more once the table is analysed) sort the whole relation table for a merge
# join; OFFSET 0 keeps the lateral subquery from being pulled up into such a join.
RELATIONS_OF_PAIRS = """
SELECT r.patient_id, r.care_unit, r.valid_from, r.valid_to, r.ended_at
FROM unnest($1::text[], $2::text[]) AS k(p, u)
CROSS JOIN LATERAL (
    SELECT * FROM relation r WHERE r.patient_id = k.p AND r.care_unit = k.u OFFSET 0
) AS r
"""

# A batch's searches per (month, care giver, care unit) added to the rollup. Several chains'
# writers add to the same rows: sorted by key, every transaction locks them in the same order,
# so they may wait for each other's commit but never deadlock.
ADD_SEARCH_COUNTS = """
INSERT INTO search_counts AS s (month, care_giver, care_unit, searches, answered)
SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
    AS k(month, care_giver, care_unit, searches, answered)
ORDER BY month, care_giver, care_unit
ON CONFLICT (month, care_giver, care_unit) DO UPDATE
    SET searches = s.searches + excluded.searches, answered = s.answered + excluded.answered
"""


def record_row(record: Record) -> tuple[Any, ...]:
    e = record.entry
    return (
        record.chain, record.seq, e.kind.value, e.event_id, e.event_time, record.recorded_at,
        e.patient_id, e.user_hsa_id, e.care_unit, e.care_giver, e.activity, e.basis, e.outcome,
        e.purpose, list(e.categories), e.payload, e.subject, record.prev_hash, record.hash,
    )


def row_record(row: asyncpg.Record) -> Record:
    entry = Entry(
        Kind(row["kind"]), row["event_id"], row["event_time"], row["patient_id"],
        row["user_hsa_id"], row["care_unit"], row["care_giver"], row["activity"], row["basis"],
        row["outcome"], row["purpose"], tuple(row["categories"]), bytes(row["payload"]),
        row["subject"],
    )
    return Record(
        row["chain"], row["seq"], row["recorded_at"], entry, bytes(row["prev_hash"]),
        bytes(row["hash"]),
    )


def _flag_of(row: asyncpg.Record) -> Flag:
    return Flag(Rule(row["rule"]), row["event_id"], row["detail"])


class PostgresAuditStore:
    """The log in PostgreSQL (schema from settings), partitioned by month of event time."""

    def __init__(self, pool: asyncpg.Pool, signer: CheckpointSigner, rules: RuleBook,
                 *, notify_channel: str = "npo_audit_records") -> None:
        self._pool = pool
        self._signer = signer
        self._rules = rules
        self._channel = notify_channel
        self._months: set[tuple[int, int]] = set()

    async def append(self, chain: str, entries: Sequence[Entry]) -> Appended:
        unique = first_of_each_id(entries)
        await self._ensure_partitions(unique)
        async with self._pool.acquire() as conn, conn.transaction():
            head = await _lock_head(conn, chain)
            try:
                # Optimistic: a redelivery is rare (after a crash), so try the batch as it is
                # and look for stored event ids only when the unique index objects.
                async with conn.transaction():
                    appended = await self._write(conn, chain, head, unique)
            except asyncpg.UniqueViolationError:
                known = await _known_ids(conn, unique)
                new = [entry for entry in unique if entry.event_id not in known]
                appended = await self._write(conn, chain, head, new) if new else Appended(chain)
        return replace(appended, duplicates=len(entries) - len(appended.stored))

    async def _write(
        self, conn: Any, chain: str, head: tuple[int, bytes], new: list[Entry]
    ) -> Appended:
        records = link(chain, head[0], head[1], new, datetime.now(UTC))
        flags = await self._evaluate(conn, new)
        await conn.copy_records_to_table(
            "record", records=[record_row(r) for r in records], columns=RECORD_COLUMNS
        )
        await _apply_relations(conn, new)
        await _insert_flags(conn, flags, {e.event_id: e for e in new})
        await self._seal(conn, chain, records[-1])
        # Last, so the rollup rows other chains' writers also add to stay locked only until commit.
        await _add_search_counts(conn, records)
        return Appended(chain, tuple(records), tuple(flags))

    async def sweep(self, limit: int, refusals: int = REFUSED_ATTEMPTS_PER_HOUR) -> list[Flag]:
        """Over the records stored since the last sweep: flag readers over ``limit`` distinct
        patients within an hour, and users with ``refusals`` refused commands within an hour."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.sweep'))")
            flags = await _sweep(conn, "access-%", Kind.ACCESS, None, Rule.MANY_PATIENTS,
                                 lambda found, flagged: patient_limit_crossings(found, limit, flagged))
            flags += await _sweep(conn, "consent-%", Kind.CONSENT, REFUSED, Rule.REPEATED_REFUSALS,
                                  lambda found, flagged: refusal_crossings(found, refusals, flagged))
            if flags:
                note = json.dumps({"flags": [f.event_id for f in flags]})
                await conn.execute("SELECT pg_notify($1, $2)", self._channel, note)
        return flags

    async def _seal(self, conn: Any, chain: str, last: Record) -> None:
        checkpoint = self._signer.sign(chain, last.seq, last.hash, datetime.now(UTC))
        await conn.execute(
            "UPDATE chain_head SET seq = $2, hash = $3 WHERE chain = $1", chain, last.seq, last.hash
        )
        await conn.execute(
            "INSERT INTO checkpoint (chain, seq, hash, signed_at, key_id, signature)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            checkpoint.chain, checkpoint.seq, checkpoint.hash, checkpoint.signed_at,
            checkpoint.key_id, checkpoint.signature,
        )
        await conn.execute("SELECT pg_notify($1, $2)", self._channel, json.dumps(
            {"chain": chain, "to": last.seq}
        ))

    async def _ensure_partitions(self, entries: Sequence[Entry]) -> None:
        months = {(e.event_time.year, e.event_time.month): e.event_time for e in entries}
        for month, moment in months.items():
            if month not in self._months:
                # Outside the batch's transaction: creating a partition locks the parent table.
                await self._pool.execute("SELECT ensure_month_partition($1)", moment)
                self._months.add(month)

    async def _evaluate(self, conn: Any, entries: list[Entry]) -> list[Flag]:
        access = [e for e in entries if e.kind is Kind.ACCESS]
        if not access:
            return []
        return self._rules.flags(access, await _relations(conn, access), await _register(conn, access))

    async def count(self, kind: Kind) -> int:
        return int(await self._pool.fetchval("SELECT count(*) FROM record WHERE kind = $1", kind.value))

    async def chains(self) -> list[str]:
        rows = await self._pool.fetch(
            "SELECT chain FROM chain_head UNION SELECT DISTINCT chain FROM checkpoint"
            " UNION SELECT DISTINCT chain FROM record ORDER BY 1"
        )
        return [row["chain"] for row in rows]

    async def records(self, chain: str) -> AsyncIterator[Record]:
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            query = "SELECT * FROM record WHERE chain = $1 ORDER BY seq, hash"
            async for row in conn.cursor(query, chain, prefetch=5000):
                yield row_record(row)

    async def checkpoints(self, chain: str) -> list[Checkpoint]:
        rows = await self._pool.fetch(
            "SELECT * FROM checkpoint WHERE chain = $1 ORDER BY seq", chain
        )
        return [
            Checkpoint(r["chain"], r["seq"], bytes(r["hash"]), r["signed_at"], r["key_id"],
                       bytes(r["signature"]))
            for r in rows
        ]

    async def flags(self) -> list[Flag]:
        rows = await self._pool.fetch("SELECT rule, event_id, detail FROM flag ORDER BY flag_id")
        return [_flag_of(row) for row in rows]

    async def search_counts(self) -> dict[SearchKey, tuple[int, int]]:
        rows = await self._pool.fetch("SELECT * FROM search_counts ORDER BY month, care_giver, care_unit")
        return {SearchKey(r["month"], r["care_giver"], r["care_unit"]): (r["searches"], r["answered"])
                for r in rows}

    async def register_persons(self, persons: dict[str, Person]) -> None:
        await self._pool.executemany(
            "INSERT INTO person_register (person_key, surname, address_digest) VALUES ($1, $2, $3)"
            " ON CONFLICT (person_key) DO UPDATE SET surname = EXCLUDED.surname,"
            " address_digest = EXCLUDED.address_digest",
            [(key, p.surname, p.address_digest) for key, p in persons.items()],
        )


async def _sweep(conn: Any, chains: str, kind: Kind, outcome: int | None, rule: Rule,
                 crossings: Crossings) -> list[Flag]:
    """One windowed rule over the chains named like ``chains``, from where it last read them:
    the users of the new records, their records of the rule within the window around them, and
    the rule's earlier flags of theirs (so none is raised twice within the hour)."""
    heads = await conn.fetch(SWEEP_HEADS, chains)
    users = await conn.fetch(SWEEP_USERS, [h["chain"] for h in heads], [h["done"] for h in heads],
                             [h["head"] for h in heads], kind.value, outcome)
    spans = ([u["u"] for u in users], [u["first"] for u in users], [u["last"] for u in users])
    entries = [row_record(row).entry
               for row in await conn.fetch(SWEEP_RECORDS, *spans, WINDOW, kind.value, outcome)]
    flagged: dict[str, list[datetime]] = {}
    for row in await conn.fetch(SWEEP_FLAGGED, *spans, rule.value, WINDOW):
        flagged.setdefault(row["user_hsa_id"], []).append(row["event_time"])
    raised = await _insert_flags(conn, crossings(entries, flagged), {e.event_id: e for e in entries})
    await conn.executemany(
        "INSERT INTO sweep_position (chain, seq) VALUES ($1, $2)"
        " ON CONFLICT (chain) DO UPDATE SET seq = EXCLUDED.seq",
        [(h["chain"], h["head"]) for h in heads],
    )
    return raised


async def _lock_head(conn: Any, chain: str) -> tuple[int, bytes]:
    await conn.execute("INSERT INTO chain_head (chain) VALUES ($1) ON CONFLICT DO NOTHING", chain)
    row = await conn.fetchrow("SELECT seq, hash FROM chain_head WHERE chain = $1 FOR UPDATE", chain)
    return int(row["seq"]), bytes(row["hash"])


async def _add_search_counts(conn: Any, records: list[Record]) -> None:
    """The batch's searches added to the monthly rollup: one statement, rows locked in key order."""
    counts = search_counts(records)
    if counts:
        await conn.execute(
            ADD_SEARCH_COUNTS, [k.month for k in counts], [k.care_giver for k in counts],
            [k.care_unit for k in counts], [n for n, _ in counts.values()],
            [a for _, a in counts.values()],
        )


async def _known_ids(conn: Any, entries: list[Entry]) -> set[str]:
    rows = await conn.fetch(
        "SELECT k.id FROM unnest($1::text[], $2::timestamptz[]) AS k(id, t)"
        " JOIN record r ON r.event_id = k.id AND r.event_time = k.t",
        [e.event_id for e in entries], [e.event_time for e in entries],
    )
    return {row["id"] for row in rows}


async def _relations(conn: Any, entries: list[Entry]) -> dict[tuple[str, str], list[Relation]]:
    """The relations of the (patient, care unit) pairs the no-relation rule asks about; whether
    one is in force is the rule's to judge (``Relation.in_force``)."""
    keys = relation_keys(entries)
    if not keys:
        return {}
    rows = await conn.fetch(RELATIONS_OF_PAIRS, [p for p, _ in keys], [u for _, u in keys])
    found: dict[tuple[str, str], list[Relation]] = {}
    for r in rows:
        found.setdefault((r["patient_id"], r["care_unit"]), []).append(
            Relation(r["patient_id"], r["care_unit"], r["valid_from"], r["valid_to"], r["ended_at"]))
    return found


async def _register(conn: Any, entries: list[Entry]) -> dict[str, Person]:
    keys = list({k for e in entries for k in (e.patient_id, e.user_hsa_id)})
    rows = await conn.fetch(
        "SELECT person_key, surname, address_digest FROM person_register"
        " WHERE person_key = ANY($1::text[])", keys,
    )
    return {r["person_key"]: Person(r["surname"], r["address_digest"]) for r in rows}


async def _apply_relations(conn: Any, entries: list[Entry]) -> None:
    for e in entries:
        change = e.relation
        if change is None:
            continue
        if change.ended:
            await conn.execute(
                "UPDATE relation SET ended_at = $2 WHERE record_id = $1 AND ended_at IS NULL",
                change.record_id, e.event_time,
            )
            continue
        await conn.execute(
            "INSERT INTO relation (record_id, patient_id, care_unit, care_giver, valid_from, valid_to)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (record_id) DO NOTHING",
            change.record_id, e.patient_id, e.care_unit, e.care_giver, change.valid_from,
            change.valid_to,
        )


async def _insert_flags(conn: Any, flags: list[Flag], by_id: dict[str, Entry]) -> list[Flag]:
    """The flags stored, those already there (same rule and event) left out."""
    if not flags:
        return []
    entries = [by_id[f.event_id] for f in flags]
    rows = await conn.fetch(
        "INSERT INTO flag (rule, event_id, event_time, patient_id, user_hsa_id, care_unit, detail)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],"
        " $6::text[], $7::text[]) ON CONFLICT (rule, event_id) DO NOTHING"
        " RETURNING rule, event_id, detail",
        [f.rule.value for f in flags], [f.event_id for f in flags],
        [e.event_time for e in entries], [e.patient_id for e in entries],
        [e.user_hsa_id for e in entries], [e.care_unit for e in entries],
        [f.detail for f in flags],
    )
    return [_flag_of(row) for row in rows]


