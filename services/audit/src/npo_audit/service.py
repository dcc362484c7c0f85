"""Use cases: a compliance officer's review of a record or flag (itself a chained record), the
search with each record's flags, and chain verification.

Verification recomputes every chain and checks it against the signed checkpoints. It names the
first problem of each chain: an *altered* record (its content no longer gives its
hash), *deleted* records (a gap in the sequence or a missing sealed tail), an *inserted* record
(a second record at a position, or one no signed checkpoint covers), or a *rewritten* stretch
(hashes that chain but differ from a signed checkpoint: the chain was recomputed).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from npo_platform.contracts.events_pb2 import ActivityType
from npo_platform.identity import Claims

from .domain import GENESIS_HASH, Entry, Kind, Record, link_hash
from .signing import Checkpoint, CheckpointVerifier
from .store import Appended, AuditSearch, AuditStore, Cursor, SearchFilter

REVIEW_CHAIN = "review"
_VERIFY = int(ActivityType.VERIFY)  # a review is the log's own follow-up: activity "verify"


def review_entry(officer: Claims, target: Entry | None, subject: str, note: str,
                 conclusion: str = "") -> Entry:
    """A compliance officer's follow-up (note and conclusion), itself a record of the chained log."""
    review = {"subject": subject, "note": note, "reviewer": officer.sub, "reviewer_name": officer.name}
    if conclusion:
        review["conclusion"] = conclusion
    payload = json.dumps(review, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return Entry(
        kind=Kind.REVIEW, event_id=str(uuid.uuid4()), event_time=datetime.now(UTC),
        patient_id=target.patient_id if target else "", user_hsa_id=officer.sub,
        care_unit=officer.care_unit or "", care_giver=officer.care_giver or "",
        activity=_VERIFY, basis=0, outcome=0, purpose="follow-up",
        categories=(), payload=payload, subject=subject,
    )


async def record_review(store: AuditStore, officer: Claims, target: Entry | None, subject: str,
                        note: str, conclusion: str = "") -> Appended:
    return await store.append(REVIEW_CHAIN, [review_entry(officer, target, subject, note, conclusion)])


async def search(queries: AuditSearch, search_filter: SearchFilter, limit: int,
                 cursor: Cursor | None) -> tuple[list[Record], dict[str, list[str]]]:
    """A page of the compliance search, newest first, and the rules that flagged each record."""
    records = await queries.search(search_filter, limit, cursor)
    return records, await queries.flags_of([r.entry.event_id for r in records])


class Problem(StrEnum):
    ALTERED = "altered"
    DELETED = "deleted"
    INSERTED = "inserted"
    REWRITTEN = "rewritten"
    BAD_SIGNATURE = "bad_signature"


@dataclass(frozen=True)
class Finding:
    chain: str
    seq: int
    problem: Problem
    event_id: str
    detail: str

    def describe(self) -> str:
        event = f" (event {self.event_id})" if self.event_id else ""
        return f"{self.problem.value}: chain {self.chain} seq {self.seq}{event}: {self.detail}"


@dataclass
class Report:
    verified: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


async def verify_log(store: AuditStore, verifier: CheckpointVerifier) -> Report:
    report = Report()
    for chain in await store.chains():
        checker = _ChainCheck(chain, await store.checkpoints(chain), verifier)
        await checker.run(store.records(chain))
        # Records committed while we walked were sealed after our first look: look again.
        checker.settle_tail(await store.checkpoints(chain), verifier)
        report.verified[chain] = checker.count
        report.findings.extend(checker.findings)
    return report


async def _groups(records: AsyncIterator[Record]) -> AsyncIterator[list[Record]]:
    """Records grouped by seq (more than one at a position means an insertion)."""
    group: list[Record] = []
    async for record in records:
        if group and record.seq != group[0].seq:
            yield group
            group = []
        group.append(record)
    if group:
        yield group


class _ChainCheck:
    def __init__(self, chain: str, checkpoints: list[Checkpoint], verifier: CheckpointVerifier):
        self.chain = chain
        self.findings: list[Finding] = []
        self.count = 0
        self._sealed: dict[int, Checkpoint] = {}
        for checkpoint in checkpoints:
            if verifier.valid(checkpoint):
                self._sealed[checkpoint.seq] = checkpoint
            else:
                self._found(checkpoint.seq, Problem.BAD_SIGNATURE, "", "checkpoint signature invalid")
        self._last_sealed = max(self._sealed, default=0)
        self._tail: list[Record] = []  # walked records past the last checkpoint known

    def _found(self, seq: int, problem: Problem, event_id: str, detail: str) -> None:
        self.findings.append(Finding(self.chain, seq, problem, event_id, detail))

    async def run(self, records: AsyncIterator[Record]) -> None:
        expected, prev = 1, GENESIS_HASH
        pending: list[Record] | None = None
        async for group in _groups(records):
            if pending is not None:
                prev = self._check(pending, expected, prev, next_prev={r.prev_hash for r in group})
                expected = pending[0].seq + 1
            pending = group
        if pending is not None:
            self._check(pending, expected, prev, next_prev=set())
            expected = pending[0].seq + 1
        if self._last_sealed >= expected:
            detail = f"records {expected}..{self._last_sealed} are sealed by a checkpoint but missing"
            self._found(expected, Problem.DELETED, "", detail)

    def _check(self, group: list[Record], expected: int, prev: bytes, next_prev: set[bytes]) -> bytes:
        seq = group[0].seq
        self.count += len(group)
        if seq > expected:
            self._found(expected, Problem.DELETED, "", f"records {expected}..{seq - 1} are missing")
            prev = group[0].prev_hash  # resynchronise to find later problems too
        linked = [r for r in group if r.prev_hash == prev and _recomputed(r, prev) == r.hash]
        genuine = self._pick(linked, next_prev)
        for record in group:
            if record is genuine:
                continue
            if len(group) > 1:
                self._found(seq, Problem.INSERTED, record.entry.event_id, "a second record at this position")
            else:
                self._found(seq, Problem.ALTERED, record.entry.event_id, "content does not give its hash")
        chosen = genuine or group[0]
        self._check_sealed(chosen)
        return chosen.hash

    def _pick(self, linked: list[Record], next_prev: set[bytes]) -> Record | None:
        if len(linked) <= 1:
            return linked[0] if linked else None
        sealed = self._sealed.get(linked[0].seq)
        preferred = [r for r in linked if r.hash in next_prev or (sealed and sealed.hash == r.hash)]
        return (preferred or linked)[0]

    def _check_sealed(self, record: Record) -> None:
        sealed = self._sealed.get(record.seq)
        if sealed is not None and sealed.hash != record.hash:
            detail = "hash differs from the signed checkpoint: the chain up to here was rewritten"
            self._found(record.seq, Problem.REWRITTEN, record.entry.event_id, detail)
        if record.seq > self._last_sealed:
            self._tail.append(record)

    def settle_tail(self, checkpoints: list[Checkpoint], verifier: CheckpointVerifier) -> None:
        """Check the records past the first checkpoint read against the checkpoints now."""
        fresh = {c.seq: c for c in checkpoints if c.seq > self._last_sealed and verifier.valid(c)}
        covered = 0
        for record in self._tail:
            sealed = fresh.get(record.seq)
            if sealed is not None and sealed.hash != record.hash:
                detail = "hash differs from the signed checkpoint: the chain up to here was rewritten"
                self._found(record.seq, Problem.REWRITTEN, record.entry.event_id, detail)
            elif sealed is not None:
                covered = record.seq
        for record in self._tail:
            if record.seq > covered:
                detail = "not covered by any signed checkpoint"
                self._found(record.seq, Problem.INSERTED, record.entry.event_id, detail)


def _recomputed(record: Record, prev: bytes) -> bytes:
    return link_hash(prev, record.chain, record.seq, record.recorded_at, record.entry)
