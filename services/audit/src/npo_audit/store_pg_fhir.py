"""The AuditEvent search in PostgreSQL: access and consent records (every record with an AuditEvent
form), newest first, keyset-paged in both directions.

``agent`` matches the user's HSA-id, the care unit or the care giver of a record (an access: the
reader's; a consent record: the unit or care giver it concerns), as the compliance search does.
``outcome`` matches the code the record's AuditEvent carries, computed in SQL from the same
tables the rendering uses (``fhir.ACCESS_OUTCOMES``, ``fhir_consent``).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from .domain import Kind
from .fhir import ACCESS_OUTCOMES, OTHER_ACCESS_OUTCOME
from .fhir_consent import DONE_OUTCOME, REFUSED, REFUSED_OUTCOME
from .fhir_search_params import AuditEventSearch
from .store import Found, Position
from .store_pg import row_record

KINDS = [Kind.ACCESS.value, Kind.CONSENT.value]


def _outcome_code_sql() -> str:
    """The AuditEvent.outcome of a row, as the rendering gives it (plain ints: no user input)."""
    access = " ".join(f"WHEN {int(value)} THEN '{code}'" for value, code in ACCESS_OUTCOMES.items())
    return (f"CASE WHEN r.kind = '{Kind.ACCESS.value}' THEN CASE r.outcome {access} "
            f"ELSE '{OTHER_ACCESS_OUTCOME}' END WHEN r.outcome = {int(REFUSED)} THEN '{REFUSED_OUTCOME}' "
            f"ELSE '{DONE_OUTCOME}' END")


_OUTCOME_CODE = _outcome_code_sql()


def _where(search: AuditEventSearch, position: Position) -> tuple[str, list[Any]]:
    args: list[Any] = [KINDS]
    clauses = ["r.kind = ANY($1::text[])"]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if search.patients is not None:
        clauses.append(f"r.patient_id = ANY({arg(sorted(search.patients))}::text[])")
    for agents in search.agents:
        any_of = f"ANY({arg(sorted(agents))}::text[])"
        clauses.append(f"(r.user_hsa_id = {any_of} OR r.care_unit = {any_of} OR r.care_giver = {any_of})")
    if search.recorded_from is not None:
        clauses.append(f"r.event_time >= {arg(search.recorded_from)}")
    if search.recorded_to is not None:
        clauses.append(f"r.event_time < {arg(search.recorded_to)}")
    if search.outcomes is not None:
        clauses.append(f"({_OUTCOME_CODE}) = ANY({arg(sorted(search.outcomes))}::text[])")
    if position.cursor is not None:
        after = ">" if position.backward else "<"
        moment, event_id = arg(position.cursor.event_time), arg(position.cursor.event_id)
        clauses.append(f"(r.event_time, r.event_id) {after} ({moment}, {event_id})")
    return " AND ".join(clauses), args


async def find(pool: asyncpg.Pool, search: AuditEventSearch, position: Position) -> Found:
    """One page of the search from ``position``: one row more than the page says whether more follow."""
    where, args = _where(search, position)
    order = "ASC" if position.backward else "DESC"
    args.append(search.page_size + 1)
    rows = await pool.fetch(
        f"SELECT r.* FROM record r WHERE {where}"  # noqa: S608 (clauses are fixed text, values $n)
        f" ORDER BY r.event_time {order}, r.event_id {order} LIMIT ${len(args)}", *args
    )
    records = [row_record(row) for row in rows[: search.page_size]]
    if position.backward:
        records.reverse()
    return Found(records, more=len(rows) > search.page_size)
