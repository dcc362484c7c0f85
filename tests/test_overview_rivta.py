"""The overview is the same whether producers speak this project's JSON contract or the
national read contracts (RIV-TA): the same records and statuses, the same causes when a
producer fails. Across the real services (tests/national.py), the routing switched at runtime
through the query service's routing admin, as an operator would."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from npo_bench.nation import Nation, running_nation
from npo_platform.identity import Principal, Role
from npo_simulator.organisations import Kind, Organisation
from npo_simulator.routing import routing_table

pytestmark = pytest.mark.integration
UNIT, GIVER = "SE2321000016-U001", "SE2321000016-G001"  # a reader of no simulated care giver
READER = Principal(sub="SE2321000016-A1B2", name="Anna", roles=frozenset({Role.CLINICIAN}),
                   care_unit=UNIT, care_giver=GIVER, assignment="A1", purpose="care")
NOTES, LABORATORY = 8, 4


class RivCalls:
    """ASGI wrapper of the simulated producers counting RIV-TA calls per URL."""

    def __init__(self) -> None:
        self.calls = Counter[str]()
        self.app: Any = None

    def wrap(self, app: Any) -> RivCalls:
        self.app = app
        return self

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith("/riv/"):
            self.calls[scope["path"]] += 1
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def riv_calls() -> RivCalls:
    return RivCalls()


@pytest.fixture(scope="module")
def nation(kafka_bootstrap_servers: str, database_url: str, riv_calls: RivCalls,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    with running_nation(kafka_bootstrap_servers, database_url, tmp_path_factory.mktemp("nation"),
                        population=1_000, query_options={"decision_cache_ttl_s": 120.0},
                        wrap_producers=riv_calls.wrap) as running:
        yield running


def _patient(nation: Nation) -> tuple[str, Organisation]:
    """A patient with notes and laboratory results at a region and notes at a municipality
    (home care after a hospital stay)."""
    for person in nation.source.people:
        by_org = nation.producers_of(person.patient_id)
        municipal_notes = any(o.kind is Kind.MUNICIPALITY and NOTES in {r.category for r in rs}
                              for o, rs in by_org.items())
        for org, records in by_org.items():
            numbers = {r.category for r in records}
            if org.kind is Kind.REGION and {NOTES, LABORATORY} <= numbers and municipal_notes:
                return person.patient_id, org
    raise AssertionError("no patient with regional notes and laboratory results")


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    producers = sorted(({k: v for k, v in p.items() if k != "durationMs"} for p in body["producers"]),
                       key=lambda p: (p["logicalAddress"] or "", p["category"]))
    return {"outcome": body["outcome"], "producers": producers, "records": body["records"]}


async def _overview(http: httpx.AsyncClient, nation: Nation, patient: str) -> dict[str, Any]:
    answer = await http.post(f"{nation.query}/v1/overview", json={"patientId": patient},
                             headers=nation.headers(READER))
    assert answer.status_code == 200, answer.text
    return _comparable(answer.json())


async def _speak(http: httpx.AsyncClient, nation: Nation, kinds: tuple[Kind, ...]) -> None:
    """Route the producers of ``kinds`` to their RIV-TA responders (none: back to JSON)."""
    table = routing_table(nation.source.nation, nation.simulator, rivta_kinds=kinds)
    admin = nation.headers(Role.ADMIN)
    for org in nation.source.nation.organisations:
        assert (await http.delete(f"{nation.query}/v1/routing/routes/{org.logical_address}",
                                  headers=admin)).status_code in (204, 404)
    answer = await http.put(f"{nation.query}/v1/routing/routes", json=table["routes"], headers=admin)
    assert answer.status_code == 204, answer.text


async def test_the_same_overview_whether_producers_speak_json_or_rivta(
    nation: Nation, riv_calls: RivCalls
) -> None:
    patient, region = _patient(nation)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    async with httpx.AsyncClient(timeout=30) as http:
        for path, body in (("relations", {"patient_id": patient}),
                           ("consents", {"patient_id": patient, "care_unit": UNIT, "valid_to": later})):
            answer = await http.post(f"{nation.consent}/v1/{path}", json=body,
                                     headers=nation.headers(READER))
            assert answer.status_code == 201, answer.text
        by_json = await _overview(http, nation, patient)
        assert not riv_calls.calls
        await _speak(http, nation, tuple(Kind))  # every producer, municipalities included
        by_rivta = await _overview(http, nation, patient)
        assert set(riv_calls.calls) == {
            "/riv/clinicalprocess/healthcond/description/GetCareDocumentationResponder/2",
            "/riv/clinicalprocess/healthcond/actoutcome/GetLaboratoryOrderOutcomeResponder/4"}
        assert by_rivta == by_json
        categories = {r["category"] for r in by_rivta["records"]
                      if r["logicalAddress"] == region.logical_address}
        assert {"notes", "laboratory"} <= categories
        assert {r["logicalAddress"] for r in by_rivta["records"] if r["category"] == "notes"} - {
            region.logical_address}  # a municipality's notes came over RIV-TA too

        behaviour = {"error_rate": 1.0, "error_status": 503}
        await http.put(f"{nation.simulator}/admin/behaviour/{region.logical_address}",
                       json=behaviour, headers=nation.headers(Role.ADMIN))
        failing_rivta = await _overview(http, nation, patient)
        await _speak(http, nation, ())
        failing_json = await _overview(http, nation, patient)
        await http.delete(f"{nation.simulator}/admin/behaviour", headers=nation.headers(Role.ADMIN))
    assert failing_rivta == failing_json
    failed = {(p["category"], p["status"], p["cause"], p["httpStatus"])
              for p in failing_rivta["producers"] if p["logicalAddress"] == region.logical_address}
    assert ("notes", "NoDataSynchFailed", "http_status", 503) in failed
    assert ("laboratory", "NoDataSynchFailed", "http_status", 503) in failed
