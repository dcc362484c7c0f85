"""Who may publish to the index and who may look a patient up in it: the rules the index's use
cases (service.py) apply whatever the protocol (JSON, RIV-TA's Update and FindContent over SOAP).

**FindContent only for aggregating systems.** Which care givers hold information about a patient
is itself sensitive (it tells where the patient has been treated). The overview's path reads
it only after the query service has the reader's decision planned and audits every read; a
lookup outside that path would read the same facts with no access record. Such lookups are
refused rather than audited: nobody outside the overview has a need to know (the operator's
question, which producers publish what, is answered by the coverage statistics, which name no
patient), and a refusal needs nothing more, where auditing would make the index write access
events of its own. Only a
``system`` token whose subject is one of the configured aggregating systems
(``INDEX_FIND_CONTENT_SYSTEMS``, the platform's query service by default) may look up. The
use cases (service.py) apply these rules for every front end.

**A producer publishes for itself.** Its token names its logical addresses and its care giver
(``care_giver``): an engagement for another address (``producer.not_owner``) or naming another
care giver as its data controller (``EI008``) refuses the whole request, nothing of it applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from npo_platform.contracts.events_pb2 import EngagementTransaction
from npo_platform.identity import Claims, Role

NOT_DATA_CONTROLLER = "EI008"  # dataController is not the care giver the producer's token names


class Refused(Exception):
    """A request the index's rules refuse (the caller may not: HTTP's 403); ``code`` is stable."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls, as the protocol authenticated them: a system's or person's id and roles."""

    subject: str
    roles: frozenset[str]
    care_giver: str | None = None
    logical_addresses: frozenset[str] = frozenset()

    @classmethod
    def of(cls, claims: Claims) -> Caller:
        return cls(claims.sub, frozenset(claims.roles), claims.care_giver, claims.logical_addresses)


def check_lookup(caller: Caller, aggregating_systems: frozenset[str]) -> None:
    """Refuse FindContent to anyone but an aggregating system."""
    if Role.SYSTEM not in caller.roles or caller.subject not in aggregating_systems:
        raise Refused("find_content.not_aggregating", "FindContent answers only the aggregating "
                      "systems; coverage statistics are at /coverage.")


def check_publisher(caller: Caller, transactions: Iterable[EngagementTransaction]) -> None:
    """Refuse engagements the producer does not own: another address or another controller."""
    engagements = [t.engagement for t in transactions]
    foreign = {e.logical_address for e in engagements} - caller.logical_addresses
    if foreign:
        raise Refused("producer.not_owner", f"{len(foreign)} logical address(es) are not among "
                      "the token's logical_addresses.")
    controllers = {e.data_controller for e in engagements}
    if caller.care_giver is None or controllers != {caller.care_giver}:
        raise Refused(NOT_DATA_CONTROLLER, "Every engagement's dataController must be the care "
                      "giver the producer's token names.")
