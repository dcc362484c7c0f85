"""The log in memory: the AuditStore's contract without a database (unit tests of handlers and
verification)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from .domain import GENESIS_HASH, Entry, Kind, Record, SearchKey, first_of_each_id, link, search_counts
from .domain_rules import (
    REFUSED_ATTEMPTS_PER_HOUR,
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


@dataclass
class InMemoryAuditStore:
    """The same contract in memory, for unit tests of handlers and verification."""

    signer: CheckpointSigner
    rules: RuleBook = field(default_factory=RuleBook)
    rows: list[Record] = field(default_factory=list)
    heads: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    sealed: list[Checkpoint] = field(default_factory=list)
    raised: list[Flag] = field(default_factory=list)
    relations: dict[str, Relation] = field(default_factory=dict)  # by consent record id
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
        keys = relation_keys(entries)
        relations: dict[tuple[str, str], list[Relation]] = {}
        for relation in self.relations.values():
            if (relation.patient_id, relation.care_unit) in keys:
                relations.setdefault((relation.patient_id, relation.care_unit), []).append(relation)
        return self.rules.flags(entries, relations, self.persons)

    def _apply_relations(self, entries: list[Entry]) -> None:
        for e in entries:
            change = e.relation
            if change is None:
                continue
            if not change.ended:
                self.relations.setdefault(change.record_id, Relation(
                    e.patient_id, e.care_unit, change.valid_from, change.valid_to))
            elif (found := self.relations.get(change.record_id)) is not None and found.ended_at is None:
                self.relations[change.record_id] = replace(found, ended_at=e.event_time)

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
        entries = [r.entry for r in self.rows]
        found = patient_limit_crossings(entries, limit, self._flagged(Rule.MANY_PATIENTS))
        found += refusal_crossings(entries, refusals, self._flagged(Rule.REPEATED_REFUSALS))
        flagged = {(f.rule, f.event_id) for f in self.raised}
        new = [f for f in found if (f.rule, f.event_id) not in flagged]
        self.raised.extend(new)
        return new

    def _flagged(self, rule: Rule) -> dict[str, list[datetime]]:
        by_id = {r.entry.event_id: r.entry for r in self.rows}
        times: dict[str, list[datetime]] = {}
        for flag in self.raised:
            if flag.rule is rule and (entry := by_id.get(flag.event_id)) is not None:
                times.setdefault(entry.user_hsa_id, []).append(entry.event_time)
        return times
