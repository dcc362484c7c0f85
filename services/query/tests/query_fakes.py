"""In-memory stand-ins for the index and the consent service, behind the query's Protocols.

Integration tests inside services/query may not import other services (ruff bans it), so the
index and consent are replaced by these; producers, broker and database are real.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from npo_query.clients import Unavailable
from npo_query.domain import Decision, EngagementVerdict, IndexEntry, RecordPolicy, Target


@dataclass
class FakeIndex:
    """FindContent over a fixed list of engagements per patient; counts lookups."""

    entries: dict[str, list[IndexEntry]] = field(default_factory=dict)
    calls: int = 0
    down: bool = False

    async def find(self, patient_id: str, service_domains: Sequence[str]) -> list[IndexEntry]:
        self.calls += 1
        if self.down:
            raise Unavailable("index.unreachable", "ConnectError")
        return [e for e in self.entries.get(patient_id, []) if e.service_domain in service_domains]


@dataclass
class FakeConsent:
    """Allows everything except blocked care givers and those without consent; counts calls.
    Its record policy closes the blocked care givers and ``blocked_units``."""

    blocked: set[str] = field(default_factory=set)
    blocked_units: set[str] = field(default_factory=set)
    no_consent: set[str] = field(default_factory=set)
    protected: bool = False
    deny_all: str | None = None  # a reason code: the whole decision is denied
    down: bool = False
    related: bool = True
    calls: int = 0
    bearers: list[str] = field(default_factory=list)

    async def decide(self, bearer: str, patient_id: str, categories: list[str],
                     targets: list[Target]) -> Decision:
        self.calls += 1
        self.bearers.append(bearer)
        if self.down:
            raise Unavailable("consent.unreachable", "ConnectError")
        if self.deny_all:
            return Decision("denied", "none", self.deny_all,
                            verdicts={t.id: EngagementVerdict(False, "none", self.deny_all)
                                      for t in targets})
        verdicts = {t.id: self._verdict(t) for t in targets}
        decision = _summary(verdicts.values(), verdicts, bool(self.blocked & _controllers(targets)))
        giver_of_units = {t.data_controller for t in targets} if self.blocked_units else set()
        policy = RecordPolicy("", None, None, frozenset(self.blocked), frozenset(self.blocked_units),
                              frozenset(giver_of_units))
        fields = ("address", "phone", "relatives", "location") if self.protected else ()
        return replace(decision, policy=policy, protected_identity=self.protected,
                       protected_fields=fields)

    async def has_relation(self, bearer: str, patient_id: str) -> bool:
        """The reader's standing: a relation in force unless ``related`` is off."""
        self.bearers.append(bearer)
        if self.down:
            raise Unavailable("consent.unreachable", "ConnectError")
        return self.related

    def _verdict(self, target: Target) -> EngagementVerdict:
        if target.data_controller in self.blocked:
            return EngagementVerdict(False, "none", "blocked")
        if not self.related:
            return EngagementVerdict(False, "none", "no_relation")
        if target.data_controller in self.no_consent:
            return EngagementVerdict(False, "none", "no_consent")
        return EngagementVerdict(True, "consent", None)


def _controllers(targets: Iterable[Target]) -> set[str]:
    return {t.data_controller for t in targets}


def _summary(all_verdicts: Iterable[EngagementVerdict], verdicts: dict[str, EngagementVerdict],
             blocked: bool) -> Decision:
    listed = list(all_verdicts)
    allowed = [v for v in listed if v.allowed]
    withheld = [v for v in listed if not v.allowed]
    outcome = "allowed" if not withheld else "partial" if allowed else "denied"
    reason = withheld[0].reason_code if withheld else None
    return Decision(outcome, "consent" if allowed else "none", reason, blocked, False, (),
                    verdicts)
