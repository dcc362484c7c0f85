"""The simulated producers over RIV-TA: the same records as their JSON contract, schema-valid
answers, faults for what they do not serve, simulated failures with the same HTTP status; and
the routing table (`npo routing`) that names which producers speak it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import typer
from test_server import PUBLIC, SOURCE, aggregator, busy_patient, token
from typer.testing import CliRunner

from npo_platform.categories import by_key
from npo_platform.identity import Role, TokenVerifier
from npo_rivta import wsdl
from npo_rivta.headers import logical_address_header
from npo_rivta.read_contracts import CARE_DOCUMENTATION, READ_CONTRACTS
from npo_rivta.records import ReadContract, documents, request
from npo_rivta.soap import envelope, read_envelope, read_fault
from npo_rivta.xml import parse
from npo_simulator.config import SimulatorSettings
from npo_simulator.organisations import Kind, nation
from npo_simulator.routing import export, routing_table
from npo_simulator.server import create_app


@pytest.fixture
async def sim() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SimulatorSettings(population=3_000, seed=5), SOURCE,
                     token_verifier=TokenVerifier(PUBLIC))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as c:
        yield c


LOCAL_ROUTING = Path(__file__).resolve().parents[2] / "services" / "query" / "routing.local.json"


def responder(contract: ReadContract) -> dict[str, str]:
    """The aggregating system's token for a contract's responder: bound to its URL."""
    return token(Role.SYSTEM, audience=f"{SimulatorSettings().base_url}{contract.interaction.path}")


async def _soap(client: httpx.AsyncClient, contract: ReadContract, address: str,
                patient: str, headers: dict[str, str] | None = None) -> httpx.Response:
    data = envelope(request(contract, patient), [logical_address_header(address)])
    return await client.post(contract.interaction.path, content=data, headers={
        **(responder(contract) if headers is None else headers),
        "Content-Type": "text/xml; charset=utf-8"})


async def _json(client: httpx.AsyncClient, category: str, address: str, patient: str) -> list[object]:
    answer = await client.post(f"/producers/{address}/{category}", headers=aggregator(address),
                               json={"patientId": patient, "pageSize": 500})
    records: list[object] = answer.json()["records"]
    return records


@pytest.mark.parametrize("contract", list(READ_CONTRACTS.values()), ids=lambda c: c.category)
async def test_a_contract_answers_the_same_records_as_the_json_contract(
    sim: httpx.AsyncClient, contract: ReadContract
) -> None:
    number = by_key(contract.category).number
    person, address = next(
        (p, r.producer.logical_address) for p in SOURCE.population for r in SOURCE.histories.of(p)
        if r.category == number)
    answer = await _soap(sim, contract, address, person.patient_id)
    assert answer.status_code == 200, answer.text
    body = read_envelope(parse(answer.content)).body
    assert wsdl.schema_errors(contract.interaction, body) == []
    found = documents(contract, body, person.patient_id)
    assert found
    assert found == await _json(sim, contract.category, address, person.patient_id)


async def test_what_a_producer_does_not_serve_is_a_fault_and_failures_keep_their_status(
    sim: httpx.AsyncClient,
) -> None:
    patient, address, _, _ = busy_patient()
    refused = await _soap(sim, CARE_DOCUMENTATION, "SE2321000016-NOBODY", patient)
    fault = read_fault(read_envelope(parse(refused.content)))
    assert (refused.status_code, fault and fault.code) == (500, "producer.not_serving")
    await sim.put(f"/admin/behaviour/{address}", json={"error_rate": 1.0, "error_status": 503},
                     headers=token(Role.ADMIN))
    failing = await _soap(sim, CARE_DOCUMENTATION, address, patient)
    assert failing.status_code == 503
    assert read_fault(read_envelope(parse(failing.content))) is not None


async def test_a_responder_answers_only_the_aggregating_systems_token_for_it(
    sim: httpx.AsyncClient,
) -> None:
    """Finding 4 of issue 21 over RIV-TA: a platform token (any role), a token bound to a JSON
    producer or to another responder, or a person's token bound to this one: each a fault."""
    patient, address, _, _ = busy_patient()
    lab = next(c for c in READ_CONTRACTS.values() if c is not CARE_DOCUMENTATION)
    audience = f"{SimulatorSettings().base_url}{CARE_DOCUMENTATION.interaction.path}"
    refused = [*(token(role) for role in (Role.SYSTEM, Role.ADMIN, Role.OPERATOR)),
               aggregator(address), responder(lab), {}]
    for headers in refused:
        answer = await _soap(sim, CARE_DOCUMENTATION, address, patient, headers)
        fault = read_fault(read_envelope(parse(answer.content)))
        assert (answer.status_code, fault and fault.code) == (
            500, "token.audience" if headers else "token.missing")
    person = await _soap(sim, CARE_DOCUMENTATION, address, patient,
                         token(Role.OPERATOR, audience=audience))
    fault = read_fault(read_envelope(parse(person.content)))
    assert (person.status_code, fault and fault.code) == (500, "role.missing")
    assert (await _soap(sim, CARE_DOCUMENTATION, address, patient)).status_code == 200


def test_regions_speak_rivta_by_default_for_their_contracts_and_the_local_table_is_current(
    tmp_path: Path,
) -> None:
    table = routing_table(nation(), "http://sim")
    rivta = [r for r in table["routes"] if r.get("protocol") == "rivta"]
    regions = {o.logical_address for o in nation().of_kind(Kind.REGION)}
    assert rivta
    assert {r["logical_address"] for r in rivta} == regions
    assert all(r["endpoint"] == f"http://sim{READ_CONTRACTS[r['category']].interaction.path}"
               for r in rivta)
    none = routing_table(nation(), "http://sim", rivta_kinds=())
    assert not [r for r in none["routes"] if "protocol" in r]
    out = tmp_path / "routing.json"
    CliRunner().invoke(_app(), ["--out", str(out)], catch_exceptions=False)
    assert json.loads(out.read_text()) == json.loads(LOCAL_ROUTING.read_text())  # `npo routing`


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(export)
    return app
