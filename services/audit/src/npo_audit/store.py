"""The audit log store: a Protocol, the PostgreSQL implementation and an in-memory one.

``append`` is the only write: under the chain head's lock it drops event ids already stored,
links the new entries into the chain, evaluates the sample-check rules, writes records, flags
and a signed checkpoint of the new head — all in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg

from .domain import (
    GENESIS_HASH,
    Entry,
    Kind,
    Record,
    SearchKey,
    first_of_each_id,
    link,
    search_counts,
)
from .rules import (
    REFUSED_ATTEMPTS_PER_HOUR,
    Flag,
    Person,
    Rule,
    RuleBook,
    build_contexts,
    needs_relation,
    patient_limit_crossings,
    refusal_crossings,
)
from .signing import Checkpoint, CheckpointSigner
from .sql import (
    ADD_SEARCH_COUNTS,
    SWEEP_FLAGS,
    SWEEP_HEADS,
    SWEEP_PAIRS,
    SWEEP_REFUSALS,
    SWEEP_REFUSED_PAIRS,
)

RECORD_COLUMNS = (
    "chain", "seq", "kind", "event_id", "event_time", "recorded_at", "patient_id", "user_hsa_id",
    "care_unit", "care_giver", "activity", "basis", "outcome", "purpose", "categories", "payload",
    "subject", "prev_hash", "hash",
)


@dataclass(frozen=True)
class Appended:
    """What one append stored: the chain range written and the flags raised."""

    chain: str
    stored: tuple[Record, ...] = ()
    flags: tuple[Flag, ...] = ()
    duplicates: int = 0


class AuditStore(Protocol):
    async def append(self, chain: str, entries: Sequence[Entry]) -> Appended: ...

    async def count(self, kind: Kind) -> int: ...

    async def chains(self) -> list[str]: ...

    def records(self, chain: str) -> AsyncIterator[Record]: ...

    async def checkpoints(self, chain: str) -> list[Checkpoint]: ...

    async def flags(self) -> list[Flag]: ...

    async def register_persons(self, persons: dict[str, Person]) -> None: ...

    async def sweep(self, limit: int, refusals: int = REFUSED_ATTEMPTS_PER_HOUR) -> list[Flag]: ...

    async def search_counts(self) -> dict[SearchKey, tuple[int, int]]: ...


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
        patients in an hour, and users with ``refusals`` refused commands in an hour."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.sweep'))")
            flags = await _sweep(conn, "access-%", SWEEP_PAIRS, SWEEP_FLAGS, limit)
            flags += await _sweep(conn, "consent-%", SWEEP_REFUSED_PAIRS, SWEEP_REFUSALS, refusals)
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
        with_relation = await _indexes_with_relation(conn, access)
        register = await _register(conn, access)
        contexts = build_contexts(access, with_relation, register)
        return [f for e, c in zip(access, contexts, strict=True) for f in self._rules.evaluate(e, c)]

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


async def _sweep(conn: Any, chains: str, pairs_sql: str, flags_sql: str, limit: int) -> list[Flag]:
    """One windowed rule over the chains named like ``chains``, from where it last read them."""
    heads = await conn.fetch(SWEEP_HEADS, chains)
    pairs = await conn.fetch(pairs_sql, [h["chain"] for h in heads], [h["done"] for h in heads],
                             [h["head"] for h in heads])
    rows = await conn.fetch(flags_sql, [p["u"] for p in pairs], [p["h"] for p in pairs], limit)
    await conn.executemany(
        "INSERT INTO sweep_position (chain, seq) VALUES ($1, $2)"
        " ON CONFLICT (chain) DO UPDATE SET seq = EXCLUDED.seq",
        [(h["chain"], h["head"]) for h in heads],
    )
    return [_flag_of(row) for row in rows]


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


async def _indexes_with_relation(conn: Any, entries: list[Entry]) -> set[int]:
    wanted = [(i, e) for i, e in enumerate(entries) if needs_relation(e)]
    if not wanted:
        return set()
    # LATERAL … LIMIT 1: one index probe per access, whatever the size of the relation table.
    rows = await conn.fetch(
        "SELECT k.i FROM unnest($1::int[], $2::text[], $3::text[], $4::timestamptz[]) AS k(i, p, u, t)"
        " CROSS JOIN LATERAL (SELECT 1 FROM relation r WHERE r.patient_id = k.p AND r.care_unit = k.u"
        " AND (r.valid_from IS NULL OR r.valid_from <= k.t)"
        " AND (r.valid_to IS NULL OR r.valid_to > k.t)"
        " AND (r.ended_at IS NULL OR r.ended_at > k.t) LIMIT 1) AS found",
        [i for i, _ in wanted], [e.patient_id for _, e in wanted],
        [e.care_unit for _, e in wanted], [e.event_time for _, e in wanted],
    )
    return {row["i"] for row in rows}


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


async def _insert_flags(conn: Any, flags: list[Flag], by_id: dict[str, Entry]) -> None:
    if not flags:
        return
    entries = [by_id[f.event_id] for f in flags]
    await conn.execute(
        "INSERT INTO flag (rule, event_id, event_time, patient_id, user_hsa_id, care_unit, detail)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],"
        " $6::text[], $7::text[]) ON CONFLICT (rule, event_id) DO NOTHING",
        [f.rule.value for f in flags], [f.event_id for f in flags],
        [e.event_time for e in entries], [e.patient_id for e in entries],
        [e.user_hsa_id for e in entries], [e.care_unit for e in entries],
        [f.detail for f in flags],
    )


@dataclass
class InMemoryAuditStore:
    """The same contract in memory, for unit tests of handlers and verification."""

    signer: CheckpointSigner
    rules: RuleBook = field(default_factory=RuleBook)
    rows: list[Record] = field(default_factory=list)
    heads: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    sealed: list[Checkpoint] = field(default_factory=list)
    raised: list[Flag] = field(default_factory=list)
    relations: dict[str, tuple[Entry, datetime | None]] = field(default_factory=dict)
    persons: dict[str, Person] = field(default_factory=dict)
    searches: dict[SearchKey, tuple[int, int]] = field(default_factory=dict)

    async def append(self, chain: str, entries: Sequence[Entry]) -> Appended:
        known = {r.entry.event_id for r in self.rows}
        new = [e for e in first_of_each_id(entries) if e.event_id not in known]
        if not new:
            return Appended(chain, duplicates=len(entries))
        seq, digest = self.heads.get(chain, (0, GENESIS_HASH))
        records = link(chain, seq, digest, new, datetime.now(UTC))
        flags = self._evaluate(new)
        self._apply_relations(new)
        self.rows.extend(records)
        self.raised.extend(flags)
        for key, (n, answered) in search_counts(records).items():
            before = self.searches.get(key, (0, 0))
            self.searches[key] = (before[0] + n, before[1] + answered)
        last = records[-1]
        self.heads[chain] = (last.seq, last.hash)
        self.sealed.append(self.signer.sign(chain, last.seq, last.hash, datetime.now(UTC)))
        return Appended(chain, tuple(records), tuple(flags), len(entries) - len(new))

    def _evaluate(self, entries: list[Entry]) -> list[Flag]:
        access = [e for e in entries if e.kind is Kind.ACCESS]
        with_relation = {i for i, e in enumerate(access) if self._related(e)}
        contexts = build_contexts(access, with_relation, self.persons)
        return [f for e, c in zip(access, contexts, strict=True) for f in self.rules.evaluate(e, c)]

    def _related(self, access: Entry) -> bool:
        for registered, ended_at in self.relations.values():
            change, t = registered.relation, access.event_time
            if change is None or registered.patient_id != access.patient_id:
                continue
            if registered.care_unit != access.care_unit:
                continue
            if (change.valid_from is None or change.valid_from <= t) and (
                change.valid_to is None or change.valid_to > t
            ) and (ended_at is None or ended_at > t):
                return True
        return False

    def _apply_relations(self, entries: list[Entry]) -> None:
        for e in entries:
            if e.relation is None:
                continue
            if not e.relation.ended:
                self.relations.setdefault(e.relation.record_id, (e, None))
            elif e.relation.record_id in self.relations:
                registered, ended_at = self.relations[e.relation.record_id]
                self.relations[e.relation.record_id] = (registered, ended_at or e.event_time)

    async def count(self, kind: Kind) -> int:
        return sum(1 for r in self.rows if r.entry.kind is kind)

    async def chains(self) -> list[str]:
        return sorted({r.chain for r in self.rows} | {c.chain for c in self.sealed})

    async def records(self, chain: str) -> AsyncIterator[Record]:
        for record in sorted((r for r in self.rows if r.chain == chain), key=lambda r: (r.seq, r.hash)):
            yield record

    async def checkpoints(self, chain: str) -> list[Checkpoint]:
        return [c for c in self.sealed if c.chain == chain]

    async def flags(self) -> list[Flag]:
        return list(self.raised)

    async def register_persons(self, persons: dict[str, Person]) -> None:
        self.persons.update(persons)

    async def search_counts(self) -> dict[SearchKey, tuple[int, int]]:
        return dict(sorted(self.searches.items()))

    async def sweep(self, limit: int, refusals: int = REFUSED_ATTEMPTS_PER_HOUR) -> list[Flag]:
        found = patient_limit_crossings((r.entry for r in self.rows), limit)
        found += refusal_crossings((r.entry for r in self.rows), refusals)
        flagged = {(f.rule, f.event_id) for f in self.raised}
        new = [f for f in found if (f.rule, f.event_id) not in flagged]
        self.raised.extend(new)
        return new
