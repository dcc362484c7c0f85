"""The simulated producers over RIV-TA: the national read contracts they publish, from the same
records as their JSON contract.

One URL per contract (``/riv/<domain>/<Name>Responder/<major>``), as the national platform
exposes them; the producer is the SOAP header's ``LogicalAddress``. Behaviour (latency, errors,
outages) is the same book as for JSON: a simulated error is a SOAP fault with that HTTP status.
As for JSON, only the aggregating system's token bound to this responder is answered: the
``system`` role, the audience ``<public URL><responder path>`` (server.producer_audience); the
guard's refusals here are faults too (npo_rivta.refusals).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response

from npo_platform.categories import by_key
from npo_platform.identity import Role
from npo_rivta.endpoint import read_body, token_claims
from npo_rivta.headers import logical_address
from npo_rivta.read_contracts import READ_CONTRACTS
from npo_rivta.records import ReadContract, answer, asked
from npo_rivta.soap import CONTENT_TYPE, SoapFault, envelope, fault, read_envelope
from npo_rivta.xml import XmlRejected, parse
from npo_simulator.behaviour import BehaviourBook, apply
from npo_simulator.config import SimulatorSettings
from npo_simulator.content import document
from npo_simulator.store import RecordSource

router = APIRouter(include_in_schema=False)  # SOAP: described by the contracts' WSDLs


def _responder(contract: ReadContract) -> Callable[[Request], Awaitable[Response]]:
    async def respond(request: Request) -> Response:
        try:
            await token_claims(request, (Role.SYSTEM,))  # its refusals are faults with its code
            return await _answer(request, contract)
        except SoapFault as refused:
            return Response(refused.to_bytes(), refused.status, media_type=CONTENT_TYPE)

    return respond


async def _answer(request: Request, contract: ReadContract) -> Response:
    settings: SimulatorSettings = request.app.state.settings
    try:
        env = read_envelope(parse(await read_body(request, settings.max_body_bytes)))
    except XmlRejected as error:
        raise SoapFault(error.code, error.detail) from None
    if env.body.tag != contract.interaction.request:
        raise SoapFault("soap.wrong_operation", f"this URL answers {contract.interaction.name}")
    source: RecordSource = request.app.state.records
    book: BehaviourBook = request.app.state.behaviour
    address = logical_address(env) or ""
    org = source.nation.by_logical_address(address)
    number = by_key(contract.category).number
    if org is None or not org.serves(address, number):
        raise SoapFault("producer.not_serving", "This address does not serve that contract.")
    outcome = book.draw(address)
    await apply(outcome)
    if outcome.status is not None:  # the simulated failure's HTTP status, as for JSON
        return Response(fault("producer.simulated_error", "Simulated producer failure.",
                              client=False), outcome.status, media_type=CONTENT_TYPE)
    question = asked(contract, env.body)
    records = source.records(question.patient_id, org, number, address=address)
    body = answer(contract, [document(r) for r in records])
    return Response(envelope(body), media_type=CONTENT_TYPE)


for _contract in READ_CONTRACTS.values():
    router.add_api_route(_contract.interaction.path, _responder(_contract), methods=["POST"])
PATHS = frozenset(c.interaction.path for c in READ_CONTRACTS.values())
