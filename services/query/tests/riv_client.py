"""A RIV-TA consumer of the query's aggregated read contracts, for the tests: requests built with
the library the query uses, answers read back into documents and ProcessingStatus entries."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from npo_rivta.headers import CORRELATION_ID, ORIGINAL_CONSUMER, SourceStatus, logical_address_header
from npo_rivta.headers import processing_status as statuses_of
from npo_rivta.records import ReadContract, documents, request
from npo_rivta.soap import CONTENT_TYPE, ReceivedFault, envelope, read_envelope, read_fault
from npo_rivta.xml import parse

AGGREGATOR = "5565594230"  # QuerySettings.riv_logical_address's default
CONSUMER = "SE2321000016-JOURNAL"  # the reader's record system


@dataclass
class RivAnswer:
    status: int
    fault: ReceivedFault | None
    documents: list[dict[str, object]]
    sources: list[SourceStatus]
    correlation_id: str


def message(contract: ReadContract, patient: str, address: str | None = AGGREGATOR, *,
            care_units: tuple[str, ...] = ()) -> bytes:
    headers = [] if address is None else [logical_address_header(address)]
    return envelope(request(contract, patient, care_units=care_units), headers)


async def post(client: httpx.AsyncClient, contract: ReadContract, data: bytes,
               headers: dict[str, str], correlation: str = "corr-1") -> httpx.Response:
    return await client.post(contract.interaction.path, content=data, headers={
        **headers, "Content-Type": CONTENT_TYPE, "SOAPAction": f'"{contract.interaction.soap_action}"',
        ORIGINAL_CONSUMER: CONSUMER, CORRELATION_ID: correlation})


def answer_of(contract: ReadContract, response: httpx.Response, patient: str = "") -> RivAnswer:
    env = read_envelope(parse(response.content))
    fault = read_fault(env)
    found = [] if fault else documents(contract, env.body, patient)
    return RivAnswer(response.status_code, fault, found, statuses_of(env),
                     response.headers.get(CORRELATION_ID, ""))


async def read(client: httpx.AsyncClient, contract: ReadContract, patient: str,
               headers: dict[str, str], correlation: str = "corr-1") -> RivAnswer:
    response = await post(client, contract, message(contract, patient), headers, correlation)
    return answer_of(contract, response, patient)
