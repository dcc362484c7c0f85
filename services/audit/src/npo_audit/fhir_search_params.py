"""FHIR search parameters of the audit's AuditEvents parsed into a search (no I/O).

``patient`` and ``agent`` are references searched by identifier (``system|value`` or the value
alone; the ``:identifier`` modifier is accepted too), ``date`` is ``AuditEvent.recorded`` with the
prefixes eq, ge, gt, le and lt at the precision given, ``outcome`` the AuditEvent's outcome code.
A value list (``a,b``) is one parameter's alternatives; repeated parameters must all hold. Errors
never quote a value: it may be a personal identity number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from npo_platform.fhir import HSA_ID_SYSTEM
from npo_platform.fhir_search import SearchError, check_format, date_bound, patient_id, token
from npo_platform.identifiers import is_hsa_id
from npo_platform.telemetry import redact

DEFAULT_COUNT = 100
MAX_COUNT = 1000
MAX_ALTERNATIVES = 50
OUTCOME_CODES = ("0", "4", "8", "12")
_SEARCH_PARAMETERS = frozenset({"patient", "patient:identifier", "agent", "agent:identifier", "date",
                                "outcome", "_count"})
PAGE = "_page"  # the continuation token of this service's paging links


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
            check_format(value)
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
        found = frozenset(patient_id(v) for v in alternatives)
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


def _agent(value: str) -> str:
    found = token(value, frozenset({HSA_ID_SYSTEM}))
    if not is_hsa_id(found):
        raise SearchError("search.agent_invalid", f"agent is an HSA-id ({HSA_ID_SYSTEM}|value).")
    return found


def _dated(search: AuditEventSearch, value: str) -> AuditEventSearch:
    bound = date_bound(value)
    if bound.low is not None and (search.recorded_from is None or bound.low > search.recorded_from):
        search = replace(search, recorded_from=bound.low)
    if bound.high is not None and (search.recorded_to is None or bound.high < search.recorded_to):
        search = replace(search, recorded_to=bound.high)
    return search

