"""Simulated producers over HTTP: records, paging, and injected latency, errors, timeouts, outages."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from npo_deploy.processes import free_port
from npo_deploy.testing import serve
from npo_platform.categories import by_number
from npo_platform.identity import (
    DEFAULT_AUDIENCE,
    Principal,
    Role,
    TokenVerifier,
    generate_keypair,
    issue_token,
)
from npo_simulator.config import SimulatorSettings
from npo_simulator.organisations import Kind, SocialServices, nation
from npo_simulator.server import create_app
from npo_simulator.store import RecordSource

SOURCE = RecordSource(3_000, seed=5)


PRIVATE, PUBLIC = generate_keypair()


def token(*roles: Role, audience: str = DEFAULT_AUDIENCE) -> dict[str, str]:
    who = Principal(sub="SE2321000016-Q001", name="Query service", roles=frozenset(roles))
    signed = issue_token(PRIVATE, who, timedelta(minutes=5), audience=audience)
    return {"Authorization": f"Bearer {signed}"}


def aggregator(address: str, base_url: str = SimulatorSettings().base_url) -> dict[str, str]:
    """The aggregating system's token for one producer: bound to that producer's endpoint."""
    return token(Role.SYSTEM, audience=f"{base_url}/producers/{address}")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SimulatorSettings(population=3_000, seed=5), SOURCE,
                     token_verifier=TokenVerifier(PUBLIC))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as c:
        yield c


def busy_patient() -> tuple[str, str, str, int]:
    """A patient with several home-care notes: (patient, logical address, category key, count)."""
    for person in SOURCE.population:
        notes = [r for r in SOURCE.histories.of(person)
                 if r.producer.kind is Kind.REGION and r.category == 8]
        if len(notes) >= 3:
            return person.patient_id, notes[0].producer.logical_address, "notes", len(notes)
    raise AssertionError("no patient with three regional notes")


async def test_records_are_served_and_paged(client: httpx.AsyncClient) -> None:
    patient, address, category, count = busy_patient()
    seen: list[str] = []
    body: dict[str, object] = {"patientId": patient, "pageSize": 1}
    while True:
        answer = await client.post(f"/producers/{address}/{category}", json=body, headers=aggregator(address))
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert page["contract"] == "GetCareDocumentation"
        seen += [r["header"]["documentId"] for r in page["records"]]
        if page["continuationToken"] is None:
            break
        body["continuationToken"] = page["continuationToken"]
    assert len(seen) == len(set(seen)) == count
    assert patient not in address


def _social_record(mode: SocialServices) -> Any:
    """A social-services record of a municipality handing its SoL records out as ``mode``."""
    for person in SOURCE.population:
        for r in SOURCE.histories.of(person):
            if r.social_services and r.producer.social_services is mode:
                return r
    raise AssertionError(f"no social-services record handed out as {mode}")


async def _served(client: httpx.AsyncClient, address: str, category: str,
                  patient: str) -> httpx.Response:
    return await client.post(f"/producers/{address}/{category}", json={"patientId": patient},
                             headers=aggregator(address))


async def test_social_services_are_served_only_where_handed_out_and_always_marked(
    client: httpx.AsyncClient,
) -> None:
    own = _social_record(SocialServices.OWN_ADDRESS)
    org = own.producer
    at_sol = (await _served(client, org.social_services_address, "notes", own.patient_id)).json()
    ids = {r["header"]["documentId"]: r for r in at_sol["records"]}
    assert own.record_id in ids
    assert all(r["header"]["socialServices"] is True for r in at_sol["records"])
    assert ids[own.record_id]["header"]["sourceSystemHSAId"] == org.source_system
    health = await _served(client, org.logical_address, "notes", own.patient_id)
    assert all("socialServices" not in r["header"] for r in health.json()["records"])
    wrong = await _served(client, org.social_services_address, "diagnoses", own.patient_id)
    assert (wrong.status_code, wrong.json()["code"]) == (404, "producer.not_serving")

    marked = _social_record(SocialServices.MARKED)
    combined = await _served(client, marked.producer.logical_address, "notes", marked.patient_id)
    [served] = [r for r in combined.json()["records"]
                if r["header"]["documentId"] == marked.record_id]
    assert served["header"]["socialServices"] is True

    kept = [r for p in SOURCE.population for r in SOURCE.histories.of(p)
            if r.social_services and r.producer.social_services is SocialServices.NONE]
    assert kept
    assert all(not r.announced for r in kept)  # never leaves a municipality that publishes nothing


async def test_a_protected_patients_records_carry_contact_details(client: httpx.AsyncClient) -> None:
    protected = next(p for p in SOURCE.population if p.protected_identity and SOURCE.histories.of(p))
    record = next(r for r in SOURCE.histories.of(protected) if r.announced and not r.social_services)
    answer = await _served(client, record.logical_address, by_number(record.category).key,
                           protected.patient_id)
    body = next(r["body"] for r in answer.json()["records"]
                if r["header"]["documentId"] == record.record_id)
    assert {"address", "phone", "relatives", "location"} <= set(body)


async def test_needs_a_token(client: httpx.AsyncClient) -> None:
    patient, address, category, _ = busy_patient()
    answer = await client.post(f"/producers/{address}/{category}", json={"patientId": patient})
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_unknown_category_and_unserved_category(client: httpx.AsyncClient) -> None:
    patient, address, _, _ = busy_patient()
    body = {"patientId": patient}
    unknown = await client.post(f"/producers/{address}/socialtjanst", json=body, headers=aggregator(address))
    assert unknown.json()["code"] == "category.unknown"
    provlabbet = nation().by_name("Provlabbet AB").logical_address
    unserved = await client.post(f"/producers/{provlabbet}/notes", json=body, headers=aggregator(provlabbet))
    assert (unserved.status_code, unserved.json()["code"]) == (404, "producer.not_serving")


async def set_behaviour(client: httpx.AsyncClient, address: str, **behaviour: object) -> None:
    answer = await client.put(f"/admin/behaviour/{address}", json=behaviour, headers=token(Role.ADMIN))
    assert answer.status_code == 200, answer.text


async def test_only_admins_change_behaviour(client: httpx.AsyncClient) -> None:
    answer = await client.put("/admin/behaviour/x", json={"outage": True}, headers=token(Role.OPERATOR))
    assert answer.status_code == 403


async def test_latency_is_added(client: httpx.AsyncClient) -> None:
    patient, address, category, _ = busy_patient()
    await set_behaviour(client, address, latency_ms=120)
    began = time.perf_counter()
    answer = await client.post(f"/producers/{address}/{category}", json={"patientId": patient},
                               headers=aggregator(address))
    assert answer.status_code == 200
    assert time.perf_counter() - began >= 0.12


LIVE_PORT = free_port()


@pytest.fixture
async def live() -> AsyncIterator[httpx.AsyncClient]:
    """The producers served by a real uvicorn on a free loopback port, and a real HTTP client."""
    settings = SimulatorSettings(population=3_000, seed=5, http_port=LIVE_PORT)
    app = create_app(settings, SOURCE, token_verifier=TokenVerifier(PUBLIC))
    async with serve(app, port=LIVE_PORT) as url, httpx.AsyncClient(base_url=url, timeout=0.5) as c:
        yield c


async def test_a_producer_set_to_time_out_does_time_out(live: httpx.AsyncClient) -> None:
    patient, address, category, _ = busy_patient()
    await set_behaviour(live, address, timeout=True, hang_s=30)
    began = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        await live.post(f"/producers/{address}/{category}", json={"patientId": patient},
                        headers=aggregator(address, str(live.base_url).rstrip("/")))
    assert 0.5 <= time.perf_counter() - began < 5


async def test_outage_answers_503(client: httpx.AsyncClient) -> None:
    patient, address, category, _ = busy_patient()
    await set_behaviour(client, address, outage=True)
    answer = await client.post(f"/producers/{address}/{category}", json={"patientId": patient},
                               headers=aggregator(address))
    assert answer.status_code == 503


async def test_error_rate_is_honoured_within_tolerance(client: httpx.AsyncClient) -> None:
    patient, address, category, _ = busy_patient()
    await set_behaviour(client, address, error_rate=0.3, error_status=502)
    calls = 600
    statuses = [
        (await client.post(f"/producers/{address}/{category}", json={"patientId": patient},
                           headers=aggregator(address))).status_code
        for _ in range(calls)
    ]
    errors = statuses.count(502)
    assert set(statuses) == {200, 502}
    # Binomial(600, 0.3): mean 180, standard deviation 11.2; four deviations either side.
    assert 135 <= errors <= 225, errors


def test_the_population_is_looked_up_by_patient_before_the_first_request() -> None:
    """Built lazily, the lookup took the first overview seconds for 100,000 people (`npo up`):
    long enough for the query's producer timeout to report the producers failed."""
    source = RecordSource(500, seed=3)
    assert "_people" not in vars(source)
    app = create_app(SimulatorSettings(population=500, seed=3), source)
    assert app.state.records is source
    assert "_people" in vars(source)


async def test_a_producer_answers_only_the_aggregating_systems_token_for_it(
    client: httpx.AsyncClient,
) -> None:
    patient, address, category, _ = busy_patient()
    other = next(o.logical_address for o in nation().producers if o.logical_address != address)
    url, body = f"/producers/{address}/{category}", {"patientId": patient}
    patient_self = Principal(sub="patient-1", name="Patient", roles=frozenset({Role.PATIENT}),
                             patient=patient)
    platform_tokens = [token(role) for role in (Role.OPERATOR, Role.ADMIN, Role.SYSTEM)] + [
        {"Authorization": f"Bearer {issue_token(PRIVATE, patient_self, timedelta(minutes=5))}"}]
    for headers in platform_tokens:  # the patient's own included: none is for a producer
        refused = await client.post(url, json=body, headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (401, "token.audience")
    another = await client.post(url, json=body, headers=aggregator(other))  # bound elsewhere
    assert (another.status_code, another.json()["code"]) == (401, "token.audience")
    person = token(Role.OPERATOR, audience=f"{SimulatorSettings().base_url}/producers/{address}")
    not_system = await client.post(url, json=body, headers=person)
    assert (not_system.status_code, not_system.json()["code"]) == (403, "role.missing")
    assert (await client.post(url, json=body, headers=aggregator(address))).status_code == 200
