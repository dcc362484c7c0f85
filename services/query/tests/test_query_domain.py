"""Aggregation rules without I/O: targets, merge order and de-duplication, outcomes, routing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from npo_platform.categories import by_key
from npo_query.cache import DecisionCache
from npo_query.domain import (
    Decision,
    IndexEntry,
    Outcome,
    Record,
    Status,
    Target,
    TargetResult,
    merge,
    outcome_of,
    targets_of,
)
from npo_query.routing import (
    STRICT,
    Authorisation,
    EndpointPolicy,
    InvalidRouting,
    Route,
    RoutingTable,
    check_route,
    parse_file,
)

NOTES, LAB = by_key("notes"), by_key("laboratory")


def _entry(address: str, category: str = "notes", controller: str = "G1") -> IndexEntry:
    c = by_key(category)
    return IndexEntry(c.service_domain, c.categorizations[0], address, f"{address}-SYS", controller)


def _record(doc: str, time: str, source: str = "S1", address: str = "LA1") -> Record:
    return Record(doc, source, time, "notes", address, {"id": doc})


def test_targets_are_distinct_per_producer_and_category_and_only_those_asked() -> None:
    entries = [_entry("LA1"), _entry("LA1"), _entry("LA1", "laboratory"), _entry("LA2")]
    targets = targets_of(entries, ["notes"])
    assert [(t.logical_address, t.category) for t in targets] == [("LA1", "notes"), ("LA2", "notes")]


def test_unknown_codes_in_the_index_are_ignored() -> None:
    odd = IndexEntry("riv:unknown", "xyz", "LA9", "S", "G")
    assert targets_of([odd, _entry("LA1")], ["notes"]) == [Target("LA1", "notes", "G1", "LA1-SYS")]


def test_merge_sorts_newest_first_and_drops_duplicates_by_document_and_source() -> None:
    a = TargetResult(Target("LA1", "notes"), Status.DATA_FROM_SOURCE,
                     records=(_record("d1", "20240101120000"), _record("d2", "20250101120000")))
    b = TargetResult(Target("LA2", "notes"), Status.DATA_FROM_SOURCE,
                     records=(_record("d1", "20240101120000", address="LA2"),
                              _record("d1", "20230101120000", source="S2")))
    merged = merge([b, a])
    assert [(r.document_id, r.source_system) for r in merged] == [
        ("d2", "S1"), ("d1", "S1"), ("d1", "S2")]
    assert merge([a, b]) == merged


def test_outcome_is_partial_when_any_target_has_no_data() -> None:
    ok = TargetResult(Target("LA1", "notes"), Status.DATA_FROM_SOURCE)
    failed = TargetResult(Target("LA2", "notes"), Status.NO_DATA_SYNCH_FAILED, "timeout")
    assert outcome_of(False, [ok]) is Outcome.ALLOWED
    assert outcome_of(False, [ok, failed]) is Outcome.PARTIAL
    assert outcome_of(True, [ok]) is Outcome.DENIED


def test_routing_needs_both_a_route_and_an_authorisation() -> None:
    table = RoutingTable.of([Route("LA1", "http://p1")],
                            [Authorisation("C", "LA1", "notes"), Authorisation("C", "LA2", "*")])
    assert table.endpoint("C", "LA1", "notes") == "http://p1"
    assert table.endpoint("C", "LA1", "laboratory") is None
    assert table.endpoint("other", "LA1", "notes") is None
    assert table.endpoint("C", "LA2", "notes") is None  # authorised, but no endpoint


def test_a_rivta_route_serves_its_contracts_category_in_place_of_the_json_route() -> None:
    notes = "http://p1/riv/clinicalprocess/healthcond/description/GetCareDocumentationResponder/2"
    rivta = Route("LA1", notes, category="notes", protocol="rivta")
    table = RoutingTable.of([Route("LA1", "http://p1"), rivta], [Authorisation("C", "LA1", "*")])
    assert table.endpoint("C", "LA1", "notes") == notes
    assert table.endpoint("C", "LA1", "diagnoses") == "http://p1"
    assert [r.protocol for r in table.all_routes()] == ["json", "rivta"]


@pytest.mark.parametrize("route", [
    Route("LA1", "http://p1/riv/x", category="notes", protocol="rivta"),  # not the responder URL
    Route("LA1", "http://p1/riv/clinicalprocess/healthcond/description/GetCareDocumentationResponder/2",
          category="diagnoses", protocol="rivta"),  # a category without a read contract here
    Route("LA1", "http://p1", category="notes", protocol="json"),  # json routes are per producer
])
def test_a_route_that_cannot_speak_its_protocol_is_refused(route: Route) -> None:
    with pytest.raises(InvalidRouting):
        check_route(route)


def test_routing_file_is_parsed_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    path.write_text(json.dumps({
        "routes": [{"logical_address": "LA1", "endpoint": "http://p1/"}],
        "authorisations": [{"consumer_system": "C", "logical_address": "LA1",
                            "categories": ["notes", "laboratory"]}],
    }))
    routes, auths = parse_file(path, STRICT)
    assert routes == [Route("LA1", "http://p1")]
    assert {a.category for a in auths} == {"notes", "laboratory"}
    path.write_text(json.dumps({"authorisations": [
        {"consumer_system": "C", "logical_address": "LA1", "categories": ["nonsense"]}]}))
    with pytest.raises(InvalidRouting):
        parse_file(path, STRICT)


def test_decision_cache_expires_and_is_invalidated_per_patient() -> None:
    now = [0.0]
    cache = DecisionCache(5.0, 100, clock=lambda: now[0])
    decision = Decision("allowed", "consent", None)
    key = ("reader", "P1", "notes")
    cache.put(key, "P1", cache.generation("P1"), decision)
    assert cache.get(key) is decision
    now[0] = 6.0
    assert cache.get(key) is None
    cache.put(key, "P1", cache.generation("P1"), decision)
    cache.invalidate("P1")
    assert cache.get(key) is None


def test_a_decision_fetched_across_a_consent_event_is_not_cached() -> None:
    cache = DecisionCache(5.0, 100)
    generation = cache.generation("P1")
    cache.invalidate("P1")  # a revocation arrived while the decision was being fetched
    cache.put(("reader", "P1"), "P1", generation, Decision("allowed", "consent", None))
    assert cache.get(("reader", "P1")) is None


def test_the_local_stacks_routing_file_routes_every_simulated_producer() -> None:
    from npo_query.config import QuerySettings
    from npo_rivta.read_contracts import CARE_DOCUMENTATION, DIAGNOSIS
    from npo_simulator.config import SimulatorSettings
    from npo_simulator.organisations import Kind, nation

    local = EndpointPolicy(allow_loopback=True)  # npo up sets QUERY_ALLOW_LOOPBACK_ROUTES
    routes, authorisations = parse_file(Path(__file__).parents[1] / "routing.local.json", local)
    table = RoutingTable.of(routes, authorisations)
    simulator = SimulatorSettings()
    base = simulator.base_url  # the audience the simulated producers answer tokens for
    for org in nation().producers:
        # Regions speak RIV-TA for the categories with a read contract (npo routing's default);
        # each endpoint is the audience the simulated producer answers tokens for.
        own = f"{base}/producers/{org.logical_address}"
        region = org.kind is Kind.REGION
        for category, contract in (("notes", CARE_DOCUMENTATION), ("diagnoses", DIAGNOSIS)):
            expected = f"{base}{contract.interaction.path}" if region else own
            assert table.endpoint(QuerySettings().consumer_system, org.logical_address,
                                  category) == expected
        # Project-defined categories have no national contract: JSON everywhere.
        assert table.endpoint(QuerySettings().consumer_system, org.logical_address, "growth") == own
    # The municipalities' social-services addresses are declared so: the overview never calls them.
    assert table.social_services == frozenset(nation().social_services_addresses) != frozenset()
    assert not table.social_services & {o.logical_address for o in nation().producers}
