"""FHIR search parameters of the audit's AuditEvents parsed into a search (no I/O).

``patient`` and ``agent`` are references searched by identifier (``system|value`` or the value
alone; the ``:identifier`` modifier is accepted too), ``date`` is ``AuditEvent.recorded`` with the
prefixes eq, ge, gt, le and lt at the precision given, ``outcome`` the AuditEvent's outcome code.
A value list (``a,b``) is one parameter's alternatives; repeated parameters must all hold. Errors
never quote a value: it may be a personal identity number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from npo_platform.fhir import HSA_ID_SYSTEM, PATIENT_ID_SYSTEMS, patient_id_system
from npo_platform.fhir_http import FhirProblem
from npo_platform.identifiers import InvalidPatientId, PatientId, is_hsa_id
from npo_platform.telemetry import redact

DEFAULT_COUNT = 100
MAX_COUNT = 1000
MAX_ALTERNATIVES = 50
OUTCOME_CODES = ("0", "4", "8", "12")
# A date or time without an offset is Swedish time, as the compliance officers read it.
LOCAL_ZONE = ZoneInfo("Europe/Stockholm")
FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
_SEARCH_PARAMETERS = frozenset({"patient", "patient:identifier", "agent", "agent:identifier", "date",
                                "outcome", "_count"})
PAGE = "_page"  # the continuation token of this service's paging links
_DATE = re.compile(
    r"(?P<prefix>[a-z]{2})?(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<H>\d{2}):(?P<M>\d{2})"
    r"(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


class SearchError(FhirProblem):
    """A search the service cannot run as asked: 400 with an OperationOutcome."""

    def __init__(self, code: str, detail: str, issue_type: str = "value") -> None:
        super().__init__(400, code, detail, issue_type)


@dataclass(frozen=True)
class AuditEventSearch:
    """What to find: every field narrows; ``None`` or empty means no condition."""

    patients: frozenset[str] | None = None  # any of these (12-digit ids)
    agents: tuple[frozenset[str], ...] = ()  # each: any agent (user, unit, giver) is one of these
    recorded_from: datetime | None = None  # inclusive
    recorded_to: datetime | None = None  # exclusive
    outcomes: frozenset[str] | None = None  # FHIR outcome codes
    count: int | None = None  # a page's size; DEFAULT_COUNT when not given

    @property
    def page_size(self) -> int:
        return self.count or DEFAULT_COUNT


@dataclass(frozen=True)
class Parsed:
    """A search, or the continuation token of one; the parameters ignored (lenient handling)."""

    search: AuditEventSearch
    page_token: str | None = None
    ignored: tuple[str, ...] = ()


def parse(items: Iterable[tuple[str, str]], *, lenient: bool = False) -> Parsed:
    """The search ``items`` (name, value) ask for; unknown names are an error unless ``lenient``."""
    search, token, ignored = AuditEventSearch(), None, []
    for name, value in items:
        if name == "_format":
            if value not in FORMATS:
                raise SearchError("search.format_unsupported", "Only JSON is offered.", "not-supported")
        elif name == PAGE:
            if token is not None:
                raise SearchError("search.page_repeated", "Give one _page.")
            token = value
        elif name not in _SEARCH_PARAMETERS:
            shown = redact(name[:60])
            if not lenient:
                raise SearchError("search.parameter_unsupported", f"Unsupported parameter {shown!r}; "
                                  "supported: patient, agent, date, outcome, _count.", "not-supported")
            ignored.append(shown)
        elif not value:
            if not lenient:
                raise SearchError("search.value_missing", f"{name} has no value.", "required")
            ignored.append(name)
        else:
            search = _narrowed(search, name.removesuffix(":identifier"), value)
    if token is not None and search != AuditEventSearch():
        raise SearchError("search.page_with_parameters", "A _page continues its search as it was: "
                          "give it alone.", "invalid")
    return Parsed(search, token, tuple(ignored))


def _narrowed(search: AuditEventSearch, name: str, value: str) -> AuditEventSearch:
    if name == "_count":
        return replace(search, count=_count(value, search))
    if name == "date":
        return _dated(search, value)
    alternatives = value.split(",")
    if len(alternatives) > MAX_ALTERNATIVES:
        raise SearchError("search.too_many_values", f"At most {MAX_ALTERNATIVES} values per parameter.")
    if name == "patient":
        found = frozenset(_patient(v) for v in alternatives)
        return replace(search, patients=found if search.patients is None else search.patients & found)
    if name == "agent":
        return replace(search, agents=(*search.agents, frozenset(_agent(v) for v in alternatives)))
    outcomes = frozenset(alternatives)
    if not outcomes <= set(OUTCOME_CODES):
        raise SearchError("search.outcome_invalid", "outcome is one of 0, 4, 8, 12.")
    return replace(search, outcomes=outcomes if search.outcomes is None else search.outcomes & outcomes)


def _count(value: str, search: AuditEventSearch) -> int:
    if search.count is not None or not value.isascii() or not value.isdigit() or int(value) < 1:
        raise SearchError("search.count_invalid", "_count is one whole number of at least 1.")
    return min(int(value), MAX_COUNT)  # FHIR: a server may return fewer than asked


def _identifier(value: str, systems: Iterable[str]) -> str:
    system, bar, found = value.rpartition("|")
    if bar and system not in systems:
        raise SearchError("search.system_unsupported", f"Identifier systems here: {', '.join(systems)}.")
    return found


def _patient(value: str) -> str:
    found = _identifier(value, sorted(PATIENT_ID_SYSTEMS))
    try:
        PatientId.parse(found)
    except InvalidPatientId:
        raise SearchError("search.patient_invalid", "patient is a 12-digit personnummer or "
                          "samordningsnummer (system|value).") from None
    system = value.rpartition("|")[0]
    if system and system != patient_id_system(found):
        # Zero matches would read as "nobody accessed the record": refuse the mismatch instead.
        raise SearchError("search.patient_system_mismatch", "The number is not of the system named.")
    return found


def _agent(value: str) -> str:
    found = _identifier(value, [HSA_ID_SYSTEM])
    if not is_hsa_id(found):
        raise SearchError("search.agent_invalid", f"agent is an HSA-id ({HSA_ID_SYSTEM}|value).")
    return found


def _dated(search: AuditEventSearch, value: str) -> AuditEventSearch:
    match = _DATE.fullmatch(value)
    if match is None:
        raise SearchError("search.date_invalid", "date is [prefix]YYYY[-MM[-DD[Thh:mm[:ss[.f]][zone]]]].")
    prefix = match["prefix"] or "eq"
    if prefix not in ("eq", "ge", "gt", "le", "lt"):
        raise SearchError("search.date_prefix_unsupported", "date prefixes here: eq, ge, gt, le, lt.",
                          "not-supported")
    start, end = _interval(match)
    low = {"eq": start, "ge": start, "gt": end}.get(prefix)
    high = {"eq": end, "le": end, "lt": start}.get(prefix)
    if low is not None and (search.recorded_from is None or low > search.recorded_from):
        search = replace(search, recorded_from=low)
    if high is not None and (search.recorded_to is None or high < search.recorded_to):
        search = replace(search, recorded_to=high)
    return search


def _interval(match: re.Match[str]) -> tuple[datetime, datetime]:
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
        raise SearchError("search.date_invalid", "date names no real date or time.") from None
