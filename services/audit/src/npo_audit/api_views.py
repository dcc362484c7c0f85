"""JSON and CSV shapes of records for the API: compliance view, patient extract, cursors."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from npo_platform.categories import CATEGORIES, InformationCategory
from npo_platform.contracts import ConsentEvent
from npo_platform.contracts.events_pb2 import AccessBasis, AccessEvent, AccessOutcome, ActivityType
from npo_platform.problems import Problem

from .domain import Kind, Record
from .service import Report
from .store import Cursor

# Access events name categories by key ("notes"); older producers by categorization ("voo").
_CATEGORY_NAMES: dict[str, InformationCategory] = {
    **{code: c for c in CATEGORIES for code in c.categorizations}, **{c.key: c for c in CATEGORIES},
}

CSV_COLUMNS = (
    "event_id", "kind", "event_time", "recorded_at", "chain", "seq", "patient_id", "user_hsa_id",
    "user_name", "care_unit", "care_giver", "activity", "purpose", "basis", "outcome",
    "reason_code", "emergency_reason", "categories", "flags", "hash",
)


def enum_name(enum: Any, value: int) -> str:
    try:
        return str(enum.Name(value)).lower()
    except ValueError:
        return str(value)


def record_view(record: Record, flags: Iterable[str] = ()) -> dict[str, Any]:
    """What a compliance officer sees of one record."""
    e = record.entry
    view: dict[str, Any] = {
        "event_id": e.event_id, "kind": e.kind.value, "event_time": e.event_time.isoformat(),
        "recorded_at": record.recorded_at.isoformat(), "chain": record.chain, "seq": record.seq,
        "patient_id": e.patient_id, "user_hsa_id": e.user_hsa_id, "user_name": "",
        "care_unit": e.care_unit, "care_giver": e.care_giver, "purpose": e.purpose,
        "categories": list(e.categories), "flags": sorted(flags), "hash": record.hash.hex(),
        "activity": "", "basis": "", "outcome": "", "reason_code": "", "emergency_reason": "",
        "subject": e.subject,
    }
    if e.kind is Kind.ACCESS:
        event = AccessEvent.FromString(e.payload)
        view.update(
            user_name=event.actor.name, activity=enum_name(ActivityType, e.activity),
            basis=enum_name(AccessBasis, e.basis), outcome=enum_name(AccessOutcome, e.outcome),
            reason_code=event.reason_code, emergency_reason=event.emergency_reason,
        )
    elif e.kind is Kind.CONSENT:  # what was registered, revoked, expired or refused, and why
        change = ConsentEvent.FromString(e.payload)
        view.update(user_name=change.actor.name, activity=enum_name(ConsentEvent.Subject, e.activity),
                    outcome=enum_name(ConsentEvent.Change, e.outcome), reason_code=change.refusal_code)
    elif e.kind is Kind.REVIEW:
        view["review"] = json.loads(e.payload)
    return view


def extract_view(record: Record) -> dict[str, Any]:
    """Inera's patient extract: who (care giver, unit) accessed what kind of information, when, why."""
    e = record.entry
    return {
        "care_giver": e.care_giver, "care_unit": e.care_unit, "access_time": e.event_time.isoformat(),
        "purpose": e.purpose, "activity": enum_name(ActivityType, e.activity),
        "resource_types": list(e.categories), "emergency": e.basis == AccessBasis.EMERGENCY,
        "resource_names": [category_names(c) for c in e.categories],
        # An attempt is logged too: refused (denied), answered in part, or not delivered.
        "outcome": enum_name(AccessOutcome, e.outcome),
    }


def category_names(key: str) -> dict[str, str]:
    """A category's Swedish and English names for display (the key itself when unknown)."""
    found = _CATEGORY_NAMES.get(key)
    return {"key": key, "sv": found.name_sv if found else key, "en": found.name_en if found else key}


def chain_views(report: Report) -> list[dict[str, Any]]:
    """Per chain: how many records were walked, whether it verified, its findings."""
    findings: dict[str, list[str]] = {}
    for finding in report.findings:
        findings.setdefault(finding.chain, []).append(finding.describe())
    chains = sorted(set(report.verified) | set(findings))
    return [{"chain": c, "records": report.verified.get(c, 0), "ok": c not in findings,
             "findings": findings.get(c, [])[:20]} for c in chains]


def to_csv_rows(views: Iterable[dict[str, Any]], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if header:
        writer.writerow(CSV_COLUMNS)
    for view in views:
        writer.writerow([_cell(view[c]) for c in CSV_COLUMNS])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    text = " ".join(value) if isinstance(value, list) else str(value)
    # Free text (an emergency reason) must not become a spreadsheet formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def encode_cursor(record: Record) -> str:
    raw = f"{record.entry.event_time.isoformat()}|{record.entry.event_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(token: str | None) -> Cursor | None:
    if not token:
        return None
    try:
        moment, event_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        at = datetime.fromisoformat(moment)
        # What encode_cursor writes: an aware time and an event id of printable characters
        # (anything else, a NUL above all, must not reach the database).
        if at.tzinfo is None or not event_id or not event_id.isprintable() or len(event_id) > 200:
            raise ValueError(token)
        return Cursor(at, event_id)
    except ValueError:
        raise Problem(422, "cursor.invalid", "The cursor is not one this service issued.") from None
