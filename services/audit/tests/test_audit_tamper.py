"""Tamper evidence over the real database: the log refuses changes, and `npo audit verify`
names the first altered, deleted or inserted record when someone bypasses that guard."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import replace
from importlib.metadata import entry_points

import asyncpg
import pytest
from audit_fixtures import access_event, patient

from npo_audit.api_views import chain_views
from npo_audit.cli import audit_app
from npo_audit.config import AuditSettings
from npo_audit.domain import access_entry, link, link_hash
from npo_audit.service import Problem, Report, verify_log
from npo_audit.signing import load_verifier
from npo_audit.store_pg import RECORD_COLUMNS, PostgresAuditStore, record_row

pytestmark = pytest.mark.integration
Conn = "asyncpg.Connection[asyncpg.Record]"
# The same Typer app `npo audit` mounts (see test_npo_cli_mounts_the_audit_commands), run without
# loading every other service's CLI entry points, which may be mid-change in a shared checkout.
AUDIT_CLI = [sys.executable, "-m", "npo_audit"]


async def _fill(store: PostgresAuditStore, n: int = 30) -> None:
    for start in range(0, n, 10):
        batch = [access_entry(access_event(patient(i))) for i in range(start, start + 10)]
        await store.append("access-p0", batch)


async def _report(store: PostgresAuditStore, settings: AuditSettings) -> Report:
    return await verify_log(store, load_verifier(settings.keys_dir))


async def _as_attacker(conn: Conn, sql: str, *args: object) -> None:
    """Bypass the append-only trigger as the tables' owner could (in one transaction)."""
    async with conn.transaction():
        await conn.execute("ALTER TABLE record DISABLE TRIGGER record_append_only")
        await conn.execute(sql, *args)
        await conn.execute("ALTER TABLE record ENABLE TRIGGER record_append_only")


def _npo_audit_verify(settings: AuditSettings) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "NPO_STATE_DIR": str(settings.state_dir),
           "AUDIT_DB_SCHEMA": settings.db_schema, "COLUMNS": "200"}
    return subprocess.run([*AUDIT_CLI, "verify"], env=env, capture_output=True, text=True, timeout=120)


def test_npo_cli_mounts_the_audit_commands() -> None:
    mounted = {entry.name: entry.value for entry in entry_points(group="npo.cli")}
    benches = {entry.name: entry.value for entry in entry_points(group="npo.bench")}

    assert mounted["audit"] == "npo_audit.cli:audit_app"
    assert benches["audit"] == "npo_bench.audit:bench_audit"
    assert {c.callback.__name__ for c in audit_app.registered_commands if c.callback} == {"verify", "worker"}


async def test_the_database_refuses_update_delete_and_truncate(
    pg_store: PostgresAuditStore, raw_db: Conn
) -> None:
    await _fill(pg_store, 10)

    for sql in ("UPDATE record SET purpose = 'x'", "UPDATE record SET user_hsa_id = 'x'",
                "DELETE FROM record", "TRUNCATE record", "DELETE FROM checkpoint"):
        with pytest.raises(asyncpg.PostgresError):
            await raw_db.execute(sql)
    assert await raw_db.fetchval("SELECT count(*) FROM record") == 10


async def test_npo_audit_verify_passes_on_a_clean_log(
    pg_store: PostgresAuditStore, audit_settings: AuditSettings
) -> None:
    await _fill(pg_store)

    result = _npo_audit_verify(audit_settings)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "chain access-p0: 30 records" in result.stdout
    assert "verified" in result.stdout


async def test_verify_names_a_modified_row(
    pg_store: PostgresAuditStore, raw_db: Conn, audit_settings: AuditSettings
) -> None:
    await _fill(pg_store)
    target = await raw_db.fetchval("SELECT event_id FROM record WHERE chain = 'access-p0' AND seq = 17")

    await _as_attacker(raw_db, "UPDATE record SET user_hsa_id = 'SE2321000016-6666' WHERE seq = 17")

    report = await _report(pg_store, audit_settings)
    first = report.findings[0]
    assert (first.problem, first.seq, first.event_id) == (Problem.ALTERED, 17, target)
    assert len(report.findings) == 1
    [chain] = chain_views(report)  # what POST /audit/verify shows per chain
    assert (chain["chain"], chain["records"], chain["ok"]) == ("access-p0", 30, False)
    assert chain["findings"] == [first.describe()]
    result = _npo_audit_verify(audit_settings)
    assert result.returncode == 1
    assert f"altered: chain access-p0 seq 17 (event {target})" in result.stdout


async def test_verify_names_a_deleted_row(
    pg_store: PostgresAuditStore, raw_db: Conn, audit_settings: AuditSettings
) -> None:
    await _fill(pg_store)

    await _as_attacker(raw_db, "DELETE FROM record WHERE chain = 'access-p0' AND seq = 12")

    report = await _report(pg_store, audit_settings)
    assert [(f.problem, f.seq) for f in report.findings] == [(Problem.DELETED, 12)]
    assert "records 12..12 are missing" in report.findings[0].detail


async def test_verify_notices_the_sealed_tail_deleted(
    pg_store: PostgresAuditStore, raw_db: Conn, audit_settings: AuditSettings
) -> None:
    await _fill(pg_store)

    await _as_attacker(raw_db, "DELETE FROM record WHERE chain = 'access-p0' AND seq > 27")

    report = await _report(pg_store, audit_settings)
    assert [(f.problem, f.seq) for f in report.findings] == [(Problem.DELETED, 28)]


async def _copy_row(raw_db: Conn, seq: int, new_seq: int, new_hash: bytes | None = None) -> str:
    new_id = str(uuid.uuid4())
    await _as_attacker(
        raw_db,
        "INSERT INTO record SELECT chain, $2, kind, $3, event_time, recorded_at, patient_id,"
        " 'SE2321000016-6666', care_unit, care_giver, activity, basis, outcome, purpose, categories,"
        " payload, subject, prev_hash, coalesce($4, hash) FROM record WHERE chain = 'access-p0' AND seq = $1",
        seq, new_seq, new_id, new_hash,
    )
    return new_id


async def test_verify_names_a_row_inserted_in_the_middle(
    pg_store: PostgresAuditStore, raw_db: Conn, audit_settings: AuditSettings
) -> None:
    await _fill(pg_store)

    inserted = await _copy_row(raw_db, 9, 9)

    report = await _report(pg_store, audit_settings)
    assert [(f.problem, f.seq, f.event_id) for f in report.findings] == [(Problem.INSERTED, 9, inserted)]


async def test_verify_names_a_row_appended_after_the_last_checkpoint_even_with_a_valid_hash(
    pg_store: PostgresAuditStore, raw_db: Conn, audit_settings: AuditSettings
) -> None:
    await _fill(pg_store)
    records = [r async for r in pg_store.records("access-p0")]
    forged_entry = access_entry(access_event(patient(99)))
    forged = link("access-p0", 30, records[-1].hash, [forged_entry], records[-1].recorded_at)[0]
    async with raw_db.transaction():
        await raw_db.copy_records_to_table("record", records=[record_row(forged)], columns=RECORD_COLUMNS,
                                           schema_name=audit_settings.db_schema)

    report = await _report(pg_store, audit_settings)
    assert [(f.problem, f.seq, f.event_id) for f in report.findings] == [
        (Problem.INSERTED, 31, forged_entry.event_id)
    ]
    assert "not covered by any signed checkpoint" in report.findings[0].detail


async def test_verify_notices_a_recomputed_chain_through_the_signed_checkpoints(
    pg_store: PostgresAuditStore, raw_db: Conn, audit_settings: AuditSettings
) -> None:
    await _fill(pg_store)  # three batches: checkpoints at seq 10, 20 and 30
    records = [r async for r in pg_store.records("access-p0")]
    prev, rewritten = records[13].hash, []
    for record in records[14:]:  # alter seq 15, then recompute every later hash (no key needed)
        entry = record.entry
        if record.seq == 15:
            entry = replace(entry, user_hsa_id="SE2321000016-6666")
        digest = link_hash(prev, record.chain, record.seq, record.recorded_at, entry)
        rewritten.append((record.seq, entry.user_hsa_id, prev, digest))
        prev = digest

    async with raw_db.transaction():
        await raw_db.execute("ALTER TABLE record DISABLE TRIGGER record_append_only")
        await raw_db.executemany(
            "UPDATE record SET user_hsa_id = $2, prev_hash = $3, hash = $4"
            " WHERE chain = 'access-p0' AND seq = $1",
            rewritten,
        )
        await raw_db.execute("ALTER TABLE record ENABLE TRIGGER record_append_only")

    report = await _report(pg_store, audit_settings)
    assert [(f.problem, f.seq) for f in report.findings] == [
        (Problem.REWRITTEN, 20),
        (Problem.REWRITTEN, 30),
    ]
