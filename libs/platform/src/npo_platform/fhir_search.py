"""FHIR search by POST for any service: the form body, a patient by identifier, date bounds.

A search that names a patient comes as FHIR's search by POST (``[type]/_search`` with an
``application/x-www-form-urlencoded`` body), so the identity number never reaches a URL, an access
log or a trace. Errors are 400 OperationOutcomes (``SearchError``) with a stable code and never
quote a value: it may be a personal identity number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from fastapi import Request

from npo_platform.fhir import PATIENT_ID_SYSTEMS, OutcomeIssue, Resource, operation_outcome, patient_id_system
from npo_platform.fhir_http import FhirProblem
from npo_platform.identifiers import InvalidPatientId, PatientId

FORM = "application/x-www-form-urlencoded"
FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
# A date or time without an offset is Swedish time, as Swedish care and its records tell time.
LOCAL_ZONE = ZoneInfo("Europe/Stockholm")
_DATE = re.compile(
    r"(?P<prefix>[a-z]{2})?(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<H>\d{2}):(?P<M>\d{2})"
    r"(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


class SearchError(FhirProblem):
    """A search the service cannot run as asked: 400 with an OperationOutcome."""

    def __init__(self, code: str, detail: str, issue_type: str = "value") -> None:
        super().__init__(400, code, detail, issue_type)


async def body_of(request: Request, *, max_bytes: int) -> bytes:
    """The request's body, refused with 413 once past ``max_bytes`` (read no further; an
    OperationOutcome, where the server's own limit would answer plain text)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise FhirProblem(413, "request.too_large", f"A request here has at most {max_bytes} bytes.",
                              "too-long")
    return bytes(body)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


async def form_items(request: Request, *, max_bytes: int, max_fields: int) -> list[tuple[str, str]]:
    """The form body's (name, value) pairs; none without a body. 415 for another media type, 413
    once past ``max_bytes``, 400 when it is not a form."""
    body = await body_of(request, max_bytes=max_bytes)
    if not body:
        return []
    if media_type(request) != FORM:
        raise FhirProblem(415, "search.media_type", f"The search parameters come as {FORM}.",
                          "not-supported")
    return parse_form(body, max_fields=max_fields)


def parse_form(body: bytes, *, max_fields: int) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=max_fields)
    except (UnicodeDecodeError, ValueError):
        raise SearchError("search.form_invalid", "The form body is not UTF-8 name=value pairs "
                          f"(at most {max_fields}).", "structure") from None


def lenient(request: Request) -> bool:
    """FHIR's ``Prefer: handling=lenient``: ignore unknown parameters (and say so)."""
    preferences = request.headers.get("prefer", "").replace(";", ",").split(",")
    return any(p.strip().replace(" ", "") == "handling=lenient" for p in preferences)


def ignored_outcome(names: Sequence[str]) -> Resource | None:
    """The search-level OperationOutcome saying which parameters lenient handling ignored (None
    when it ignored none)."""
    if not names:
        return None
    text = "ignored (handling=lenient): " + ", ".join(names)
    return operation_outcome([OutcomeIssue("warning", "not-supported", text, "search.parameter_ignored")])


def check_format(value: str) -> None:
    if value not in FORMATS:
        raise SearchError("search.format_unsupported", "Only JSON is offered.", "not-supported")


def token(value: str, systems: frozenset[str]) -> str:
    """The code of ``[system|]code``; a system, when named, must be one of ``systems``."""
    system, bar, code = value.rpartition("|")
    if bar and system not in systems:
        raise SearchError("search.system_unsupported",
                          f"Identifier systems here: {', '.join(sorted(systems))}.")
    return code


def patient_id(value: str) -> str:
    """A patient's 12-digit number from ``[system|]number`` (HL7 Sweden's systems). A number under
    the other kind's system is refused: zero matches would read as "nothing there"."""
    found = token(value, PATIENT_ID_SYSTEMS)
    try:
        PatientId.parse(found)
    except InvalidPatientId:
        raise SearchError("search.patient_invalid", "patient is a 12-digit personnummer or "
                          "samordningsnummer (system|value).") from None
    system = value.rpartition("|")[0]
    if system and system != patient_id_system(found):
        raise SearchError("search.patient_system_mismatch", "The number is not of the system named.")
    return found


@dataclass(frozen=True)
class DateBound:
    """A date parameter as bounds on an instant: ``low`` inclusive, ``high`` exclusive."""

    low: datetime | None
    high: datetime | None

    def holds(self, moment: datetime) -> bool:
        return (self.low is None or moment >= self.low) and (self.high is None or moment < self.high)


def date_bound(value: str, name: str = "date") -> DateBound:
    """``[eq|ge|gt|le|lt]YYYY[-MM[-DD[Thh:mm[:ss[.f]][zone]]]]`` at the precision given."""
    match = _DATE.fullmatch(value)
    if match is None:
        raise SearchError("search.date_invalid", f"{name} is [prefix]YYYY[-MM[-DD[Thh:mm[:ss[.f]][zone]]]].")
    prefix = match["prefix"] or "eq"
    if prefix not in ("eq", "ge", "gt", "le", "lt"):
        raise SearchError("search.date_prefix_unsupported", f"{name} prefixes here: eq, ge, gt, le, lt.",
                          "not-supported")
    start, end = _interval(match, name)
    return DateBound({"eq": start, "ge": start, "gt": end}.get(prefix),
                     {"eq": end, "le": end, "lt": start}.get(prefix))


def _interval(match: re.Match[str], name: str) -> tuple[datetime, datetime]:
    """The instants [start, end) the value names at its precision (a year, a day, a second…)."""
    year, month, day = int(match["y"]), int(match["m"] or 1), int(match["d"] or 1)
    try:
        zone = (datetime.fromisoformat(f"2000-01-01T00:00{match['tz']}").tzinfo if match["tz"]
                else LOCAL_ZONE)
        if match["H"] is None:
            start = datetime(year, month, day, tzinfo=zone)
            following = ((year + 1, 1, 1) if match["m"] is None else
                         (year + month // 12, month % 12 + 1, 1) if match["d"] is None else None)
            end = (datetime(*following, tzinfo=zone) if following
                   else datetime.combine(start.date() + timedelta(days=1), start.timetz()))
            return start, end
        fraction = match["f"] or ""
        start = datetime(year, month, day, int(match["H"]), int(match["M"]), int(match["S"] or 0),
                         int(fraction[:6].ljust(6, "0")), tzinfo=zone)
        step = (timedelta(minutes=1) if match["S"] is None else
                timedelta(microseconds=10 ** (6 - min(len(fraction), 6))))
        return start, start + step
    except (ValueError, OverflowError):
        raise SearchError("search.date_invalid", f"{name} names no real date or time.") from None
