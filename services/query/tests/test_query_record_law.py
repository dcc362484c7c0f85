"""The access law per record (domain): the decision's record policy applied to producers'
records, protected fields removed, and what the reader is told of blocked targets; no I/O."""

from __future__ import annotations

from typing import Any

from npo_query.api import BLOCKED_ENTRY, producers_json
from npo_query.domain import (
    CLOSED,
    Record,
    RecordPolicy,
    Status,
    Target,
    TargetResult,
    Withheld,
    apply_law,
    hidden_by_block,
    withheld_reason,
)

OWN, OTHER, BLOCKED_GIVER = "SE2321000016-G1", "SE2321000032-G2", "SE2321000048-G3"
A1, A2, B1 = "SE2321000016-U1", "SE2321000016-U2", "SE2321000032-U1"
# The reader at OWN/A1 with a relation and consent: an internal block on A2, a block on G3.
POLICY = RecordPolicy(OWN, None, None, frozenset({BLOCKED_GIVER}), frozenset({A2}),
                      frozenset({OWN}))
TARGET = Target("SE2321000016-LA", "notes", OWN, "SE2321000016-SYS")


def record(doc: str, giver: str = "", unit: str = "", *, social: bool = False,
           document: dict[str, Any] | None = None) -> Record:
    return Record(doc, "SE2321000016-SYS", "20250101120000", "notes", TARGET.logical_address,
                  document or {"header": {"documentId": doc}}, giver, unit, social)


def test_a_unit_block_withholds_that_units_records_and_keeps_the_readers_own() -> None:
    assert withheld_reason(POLICY, record("a1", OWN, A1), OWN) is None
    assert withheld_reason(POLICY, record("a2", OWN, A2), OWN) == "blocked"


def test_a_record_without_a_unit_of_a_care_giver_with_unit_blocks_is_withheld() -> None:
    assert withheld_reason(POLICY, record("x", OWN, ""), OWN) == "unit_unknown"
    assert withheld_reason(POLICY, record("y", OTHER, ""), OWN) is None  # no unit blocks there


def test_a_record_names_its_care_giver_else_it_is_the_engagements() -> None:
    assert withheld_reason(POLICY, record("g3", BLOCKED_GIVER, "SE2321000048-U1"), OWN) == "blocked"
    assert withheld_reason(POLICY, record("g3", "", "SE2321000048-U1"), BLOCKED_GIVER) == "blocked"


def test_inner_secrecy_and_consent_per_care_giver() -> None:
    no_consent = RecordPolicy(OWN, None, "no_consent")
    assert withheld_reason(no_consent, record("own", OWN, A1), OWN) is None
    assert withheld_reason(no_consent, record("other", OTHER, B1), OWN) == "no_consent"
    for giver in (OWN, OTHER):
        assert withheld_reason(CLOSED, record("r", giver, A1), OWN) is not None  # fail closed


def test_a_social_services_record_is_withheld_whatever_the_policy() -> None:
    open_to_all = RecordPolicy(OWN, None, None)
    assert withheld_reason(open_to_all, record("s", OWN, A1, social=True), OWN) == "social_services"


def test_apply_law_keeps_what_is_released_and_counts_the_rest_per_reason_giver_and_unit() -> None:
    records = (record("a1", OWN, A1), record("a2", OWN, A2), record("a2b", OWN, A2),
               record("u", "", ""), record("s", OWN, A1, social=True))
    result = apply_law(POLICY, TargetResult(TARGET, Status.DATA_FROM_SOURCE, records=records))
    assert [r.document_id for r in result.records] == ["a1"]
    assert result.withheld == (Withheld("blocked", OWN, A2, 2), Withheld("social_services", OWN, A1, 1),
                               Withheld("unit_unknown", OWN, "", 1))
    assert result.status is Status.DATA_FROM_SOURCE


def test_protected_fields_are_removed_at_any_depth_and_counted() -> None:
    document = {"header": {"documentId": "p", "address": "Storgatan 1"},
                "body": {"text": "x", "relatives": [{"name": "N"}],
                         "contacts": [{"Phone": "070", "role": "home"}], "location": {"lat": 1}}}
    plain = record("q", OWN, A1)
    result = apply_law(POLICY, TargetResult(TARGET, Status.DATA_FROM_SOURCE,
                                            records=(record("p", OWN, A1, document=document), plain)),
                       ("address", "phone", "relatives", "location"))
    assert result.records[0].document == {"header": {"documentId": "p"},
                                          "body": {"text": "x", "contacts": [{"role": "home"}]}}
    assert result.records[1] is plain
    assert result.protected_removed == 1
    assert document["header"]["address"] == "Storgatan 1"  # the producer's answer is not mutated


def test_a_target_all_of_whose_records_a_block_withholds_is_told_only_as_the_blocked_entry() -> None:
    open_target = TargetResult(Target("LA0", "notes", OTHER), Status.DATA_FROM_SOURCE,
                               records=(record("b", OTHER, B1),))
    all_blocked = apply_law(POLICY, TargetResult(TARGET, Status.DATA_FROM_SOURCE,
                                                 records=(record("a2", OWN, A2),)))
    some_blocked = apply_law(POLICY, TargetResult(TARGET, Status.DATA_FROM_SOURCE,
                                                  records=(record("a1", OWN, A1), record("a2", OWN, A2))))
    withheld = TargetResult(Target("LA9", "microbiology", BLOCKED_GIVER), Status.WITHHELD_BY_DECISION,
                            "blocked")
    assert hidden_by_block(all_blocked)
    assert hidden_by_block(withheld)
    assert not hidden_by_block(some_blocked)
    told = producers_json([all_blocked, open_target, withheld, some_blocked])
    assert [p["logicalAddress"] for p in told] == ["LA0", TARGET.logical_address, None]
    assert told[-1] == BLOCKED_ENTRY
    assert (BLOCKED_ENTRY["category"], BLOCKED_ENTRY["dataController"]) == (None, None)
    assert "microbiology" not in str(told)
