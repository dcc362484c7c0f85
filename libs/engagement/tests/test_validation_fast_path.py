"""The validation's one-pass fast path and its full rule walk agree (table-driven).

For every message: if the full walk accepts it, the fast path returns the same transactions (or
None, which only costs time); if the full walk rejects it, the fast path returns None, so the
rejection and its EI codes always come from the full walk. Valid messages of the everyday shape
must take the fast path.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from npo_engagement.model import Identity, Transaction, Version, identity_key
from npo_engagement.validation import (
    InvalidUpdate,
    Rules,
    _all_valid_transactions,
    _full_walk,
    transactions_of,
)
from npo_platform.contracts import EngagementUpdate
from npo_platform.contracts.events_pb2 import Engagement, EngagementTransaction
from npo_platform.events import new_meta
from npo_platform.identifiers import make_personnummer

PRODUCER = "SE2321000016-1234"
OWN = "SE5565594230-NPOIDX"
RULES = Rules(own_addresses=frozenset({OWN}))
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
P = make_personnummer(date(1950, 1, 1), 11)
Q = make_personnummer(date(1960, 2, 2), 22)
WRONG_CHECK_DIGIT = P[:-1] + str((int(P[-1]) + 1) % 10)


def _engagement(**fields: str) -> Engagement:
    values = {
        "registered_resident_identification": P,
        "service_domain": "riv:clinicalprocess:healthcond:description",
        "categorization": "voo",
        "logical_address": "SE2321000016-9876",
        "source_system": PRODUCER,
        "data_controller": "SE2321000016-0001",
        "most_recent_content": "20260101120000",
    } | fields
    return Engagement(**values)


def _update(
    *engagements: Engagement, producer: str = PRODUCER, at: datetime | None = T0, delete: bool = False
) -> EngagementUpdate:
    update = EngagementUpdate(
        meta=new_meta(producer or "x", at=at or T0), producer=producer,
        transactions=[EngagementTransaction(engagement=e, delete_flag=delete) for e in engagements],
    )
    if at is None:
        update.meta.ClearField("event_time")
    return update


def _many(n: int) -> EngagementUpdate:
    return _update(*(_engagement(business_object_instance_identifier=f"doc-{k}") for k in range(n)))


# (name, update, takes the fast path)
VALID: list[tuple[str, EngagementUpdate, bool]] = [
    ("one", _update(_engagement()), True),
    ("ten keys, one content time", _update(*(_engagement(categorization=f"c{k}") for k in range(10))), True),
    ("two patients", _update(_engagement(), _engagement(registered_resident_identification=Q)), True),
    ("optional parts set", _update(_engagement(
        business_object_instance_identifier="doc-1", clinical_process_interest_id="p-1", owner="SE1-x",
    )), True),
    ("optional part written NA", _update(_engagement(owner="NA")), True),
    ("empty content time", _update(_engagement(most_recent_content="")), True),
    ("different content times", _update(
        _engagement(), _engagement(categorization="dia", most_recent_content="20251231235959")), True),
    ("delete flag", _update(_engagement(), delete=True), True),
    ("limits exactly", _update(_engagement(
        business_object_instance_identifier="b" * 128, clinical_process_interest_id="c" * 128,
        owner="o" * 64, categorization="k" * 255, data_controller="d" * 64)), True),
    ("inner whitespace", _update(_engagement(categorization="a  b\tc")), True),
    ("1000 transactions", _many(1000), True),
]

INVALID: list[tuple[str, EngagementUpdate]] = [
    ("EI000 none", _update()),
    ("EI000 1001", _many(1001)),
    ("EI001 twice", _update(_engagement(), _engagement(most_recent_content="20260102000000"))),
    ("EI001 empty and NA are one identity", _update(_engagement(owner=""), _engagement(owner="NA"))),
    ("EI002 producer missing", _update(_engagement(source_system=""), producer="")),
    *[
        (f"EI002 {name} missing", _update(_engagement(**{name: ""})))
        for name in ("registered_resident_identification", "service_domain", "categorization",
                     "logical_address", "source_system", "data_controller")
    ],
    *[
        (f"EI002 {name} {value!r}", _update(_engagement(**{name: value})))
        for name in ("service_domain", "business_object_instance_identifier", "owner", "data_controller")
        for value in (" x", "x ", "\tx", "x\n", "\u00a0x", "x\u2003", "x\x1f", "\x1c")
    ],
    ("EI002 patient with a trailing space", _update(_engagement(registered_resident_identification=P + " "))),
    ("EI003 boi 129", _update(_engagement(business_object_instance_identifier="b" * 129))),
    ("EI003 process 129", _update(_engagement(clinical_process_interest_id="c" * 129))),
    ("EI003 owner 65", _update(_engagement(owner="o" * 65))),
    ("EI003 categorization 256", _update(_engagement(categorization="k" * 256))),
    ("EI003 address 65", _update(_engagement(logical_address="a" * 65))),
    ("EI003 patient 33", _update(_engagement(registered_resident_identification="1" * 33))),
    ("EI004 content format", _update(_engagement(most_recent_content="2026-01-01T12:00"))),
    ("EI004 content date", _update(_engagement(most_recent_content="20261301120000"))),
    ("EI004 content non-ASCII digits", _update(_engagement(most_recent_content="٢٠٢٦٠١٠١١٢٠٠٠٠"))),
    ("EI004 second content bad", _update(
        _engagement(), _engagement(categorization="d", most_recent_content="x"))),
    ("EI004 event time missing", _update(_engagement(), at=None)),
    ("EI004 event time in the future", _update(_engagement(), at=T0 + timedelta(hours=1))),
    ("EI005 check digit", _update(_engagement(registered_resident_identification=WRONG_CHECK_DIGIT))),
    ("EI005 second patient bad", _update(_engagement(), _engagement(registered_resident_identification="1"))),
    ("EI006 logical address", _update(_engagement(logical_address=OWN))),
    ("EI006 source system", _update(_engagement(source_system=OWN), producer=OWN)),
    ("EI007 other producer", _update(_engagement(source_system="SE2321000016-5555"))),
    ("several codes", _update(_engagement(), _engagement(most_recent_content="x"), _engagement(
        registered_resident_identification="1", business_object_instance_identifier="b"))),
]


def _full(update: EngagementUpdate, received_at: datetime | None) -> Any:
    try:
        return _full_walk(update, RULES, received_at)
    except InvalidUpdate as error:
        return error


@pytest.mark.parametrize("received_at", [T0, None])
@pytest.mark.parametrize(("name", "update", "fast"), VALID, ids=[c[0] for c in VALID])
def test_valid_messages_agree(
    name: str, update: EngagementUpdate, fast: bool, received_at: datetime | None
) -> None:
    full = _full_walk(update, RULES, received_at)
    quick = _all_valid_transactions(update, RULES, received_at)
    assert (quick is not None) is fast
    if quick is not None:
        assert quick == full
        assert [t.key for t in quick] == [t.key for t in full]
        assert [type(t.identity) for t in quick] == [Identity] * len(full)
    assert transactions_of(update, RULES, received_at=received_at) == full


@pytest.mark.parametrize(("name", "update"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_messages_are_left_to_the_full_walk(name: str, update: EngagementUpdate) -> None:
    full = _full(update, T0)
    assert isinstance(full, InvalidUpdate), name
    assert name.startswith("several") or name.split()[0] in full.codes
    assert _all_valid_transactions(update, RULES, T0) is None
    with pytest.raises(InvalidUpdate) as caught:
        transactions_of(update, RULES, received_at=T0)
    assert (caught.value.codes, str(caught.value)) == (full.codes, str(full))


def test_identities_and_transactions_are_frozen_and_carry_the_identity_key() -> None:
    parts = (P, "d", "c", "l", "NA", "NA", "s", "g", "NA")
    identity = Identity(*parts)
    assert identity.parts() == parts
    assert identity.key == identity_key(parts) == Identity(*parts).key
    assert (identity, hash(identity)) == (Identity(*parts), hash(Identity(*parts)))
    with pytest.raises(AttributeError):  # msgspec's frozen struct
        identity.patient = Q  # type: ignore[misc]
    version = Version(T0, "20260101120000", "e-1")
    built = Transaction(identity, "c", True, version, identity.key)
    assert built == Transaction(identity, "c", True, version, identity.key)
    assert hash(built) == hash(Transaction(identity, "c", True, version, identity.key))
    with pytest.raises(AttributeError):
        built.delete = False  # type: ignore[misc]


def test_the_fast_path_keys_each_transaction_with_its_identity_key() -> None:
    u = _update(_engagement(), _engagement(categorization="upp", owner=""))
    for checked in (transactions_of(u, RULES, received_at=T0), _full(u, T0)):
        assert isinstance(checked, list)
        assert [t.key for t in checked] == [t.identity.key for t in checked]
        assert checked[1].identity.owner == "NA"


def test_versions_order_by_event_time_then_content_then_event_id() -> None:
    later = T0 + timedelta(seconds=1)
    ordered = [Version(T0, "20260101120000", "b"), Version(T0, "20260101120001", "a"),
               Version(later, "20250101000000", "a"), Version(later, "20250101000000", "b")]
    for older, newer in itertools.pairwise(ordered):
        assert newer > older
        assert older < newer
        assert not older > newer
    assert Version(T0, "c", "e") == Version(T0, "c", "e")
    assert not Version(T0, "c", "e") > Version(T0, "c", "e")
