"""The notifications the simulator announces reproduce the seed's coverage; social-services
records are announced only where a municipality hands them out, at the address they are at."""

from __future__ import annotations

from npo_platform.categories import AVAILABLE_CATEGORIES, find_by_code
from npo_simulator.notifications import engagements_by_producer
from npo_simulator.organisations import Kind, SocialServices, nation
from npo_simulator.population import Population
from npo_simulator.records import Histories

SIZE = 20_000


def announced() -> dict[str, set[int]]:
    """Category numbers announced per data controller for a population of SIZE."""
    histories = Histories(nation(), seed=1)
    records = (r for p in Population(SIZE, seed=1) for r in histories.of(p))
    out: dict[str, set[int]] = {}
    for org, transactions in engagements_by_producer(records).items():
        for tx in transactions:
            e = tx.engagement
            assert e.data_controller == org.care_giver
            category = find_by_code(e.service_domain, e.categorization)
            assert category is not None
            assert org.serves(e.logical_address, category.number)
            assert e.source_system == org.source_system
            if e.logical_address == org.social_services_address:
                assert category.number == 8  # SoL journal entries, served as notes
                ANNOUNCED_AT_SOL.add(e.logical_address)
            else:
                assert e.logical_address == org.logical_address
            out.setdefault(e.data_controller, set()).add(category.number)
    return out


ANNOUNCED_AT_SOL: set[str] = set()


def test_every_producer_announces_exactly_what_it_publishes() -> None:
    by_controller = announced()
    available = {c.number for c in AVAILABLE_CATEGORIES}
    for org in nation().producers:
        assert by_controller.get(org.care_giver, set()) == set(org.publishes), org.name
        share = len(by_controller[org.care_giver] & available) / len(available)
        assert round(share * 100 + 1e-9) == org.coverage_1_11
    consumers = {o.care_giver for o in nation().organisations if not o.publishes}
    assert not consumers & set(by_controller), "consuming organisations announce nothing"


def test_social_services_are_announced_at_their_own_addresses_by_the_municipalities_that_publish(
) -> None:
    announced()
    own = set(nation().social_services_addresses)
    assert own
    assert own >= ANNOUNCED_AT_SOL, "only declared social-services addresses"
    assert len(ANNOUNCED_AT_SOL) >= len(own) // 2  # most of them have elderly SoL clients at SIZE
    for org in nation().organisations:
        own_address = org.social_services is SocialServices.OWN_ADDRESS
        assert (org.social_services_address is not None) is own_address
        if org.social_services is not SocialServices.NONE:
            assert org.kind is Kind.MUNICIPALITY
            assert org.publishes
