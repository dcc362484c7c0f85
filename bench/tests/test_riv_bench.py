"""``npo bench riv``'s load is what it claims: valid Updates of 1000 distinct engagements, and
reads only of categories with a national read contract."""

from __future__ import annotations

from npo_bench.riv_load import ADDRESS, OWN, SENDER, pairs, update_message
from npo_rivta import engagementindex as ei
from npo_rivta import wsdl
from npo_rivta.contracts import UPDATE
from npo_rivta.headers import logical_address
from npo_rivta.read_contracts import READ_CONTRACTS
from npo_rivta.soap import read_envelope
from npo_rivta.xml import parse


def _engagements(n: int) -> list[ei.Engagement]:
    env = read_envelope(parse(update_message(n)))
    assert logical_address(env) == OWN
    assert wsdl.schema_errors(UPDATE, env.body) == []
    return [tx.engagement for tx in ei.transactions(env.body, UPDATE)]


def test_each_update_holds_a_thousand_distinct_engagements_no_other_update_holds() -> None:
    first, second = _engagements(0), _engagements(1)
    keys = {e.SerializeToString(deterministic=True) for e in first}
    assert len(first) == len(keys) == 1000
    assert {e.logical_address for e in first} == {ADDRESS}
    assert not keys & {e.SerializeToString(deterministic=True) for e in second}


def test_the_updates_are_sent_as_the_care_giver_and_address_the_token_names() -> None:
    engagements = _engagements(0)
    assert {e.data_controller for e in engagements} == {SENDER.care_giver}
    assert {e.logical_address for e in engagements} <= SENDER.logical_addresses


def test_the_readers_ask_only_categories_with_a_read_contract() -> None:
    found = pairs()
    assert len(found) > 1000
    assert {category for _, category in found} <= set(READ_CONTRACTS)
