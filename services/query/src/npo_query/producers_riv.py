"""The producer port's RIV-TA adapter: a national read contract's request to the producer's
responder URL, its answer parsed into the same records as a JSON producer's.

Everything but the exchange itself is ``HttpProducerClient``'s: the time budget, the span, and
the statuses and causes (a non-200 answer, a SOAP fault included, is ``http_status``; an answer
that is not the contract's, by its schema, or names another patient is ``invalid_answer``).
``ByProtocol`` is the one ``ProducerClient`` the aggregator holds: the route of a target says
which adapter calls it (a route to the category's responder URL speaks RIV-TA).
"""

from __future__ import annotations

from functools import lru_cache

import aiohttp
from opentelemetry.context import Context
from yarl import URL

from npo_rivta import wsdl
from npo_rivta.headers import ORIGINAL_CONSUMER, logical_address_header
from npo_rivta.read_contracts import READ_CONTRACTS
from npo_rivta.records import ReadContract, documents, request, result_code
from npo_rivta.soap import CONTENT_TYPE, SoapFault, envelope, read_envelope
from npo_rivta.xml import XmlRejected, parse

from .clients import traced_headers
from .domain import Target, TargetResult
from .producers import (
    HttpProducerClient,
    InvalidAnswer,
    ProducerClient,
    ProducerTokenSource,
    _HttpFailure,
    _Page,
)


class RivProducerClient(HttpProducerClient):
    """Calls one read contract per target, once (the contracts have no paging)."""

    def __init__(self, http: aiohttp.ClientSession, token: ProducerTokenSource, *,
                 connect_timeout_s: float, consumer_system: str) -> None:
        super().__init__(http, token, connect_timeout_s=connect_timeout_s, page_size=1,
                         max_pages=1)
        self._consumer = consumer_system

    def _url(self, endpoint: str, category: str) -> tuple[URL, str]:
        return _parsed(endpoint)

    async def _pages(self, endpoint: str, url: URL, traced: Context, target: Target,
                     patient_id: str, into: list[_Page]) -> None:
        contract = READ_CONTRACTS[target.category]
        data = envelope(request(contract, patient_id, source_system=target.source_system),
                        [logical_address_header(target.logical_address)])
        # The token's audience is this responder's URL (tokens.ProducerTokens), as for JSON.
        headers = traced_headers(self._token(endpoint), traced) | {
            "Content-Type": CONTENT_TYPE, ORIGINAL_CONSUMER: self._consumer,
            "SOAPAction": f'"{contract.interaction.soap_action}"'}
        async with self._http.post(url, data=data, headers=headers, timeout=self._timeout) as answer:
            if answer.status != 200:
                raise _HttpFailure(answer.status)
            content = await answer.read()
        into.append(_Page.model_construct(records=_documents(contract, content, patient_id),
                                          continuation_token=None))


def _documents(contract: ReadContract, content: bytes, patient_id: str) -> list[dict[str, object]]:
    """The answer's records; InvalidAnswer for anything but the contract's valid, successful
    answer (a ``result`` of ERROR included)."""
    try:
        env = read_envelope(parse(content))
    except (XmlRejected, SoapFault):
        raise InvalidAnswer from None
    body = env.body
    if body.tag != contract.interaction.response or wsdl.schema_errors(contract.interaction, body):
        raise InvalidAnswer
    if result_code(contract, body) == "ERROR":
        raise InvalidAnswer
    return documents(contract, body, patient_id)


@lru_cache(maxsize=10_000)
def _parsed(endpoint: str) -> tuple[URL, str]:
    return URL(endpoint), endpoint


@lru_cache(maxsize=100_000)
def speaks_rivta(endpoint: str, category: str) -> bool:
    """Whether a target's route is its category's RIV-TA responder (routing.check_route makes
    every rivta route one, and no json route). Decided once per route and category, as the
    JSON adapter parses its URL once: every producer call of every overview asks."""
    contract = READ_CONTRACTS.get(category)
    return contract is not None and endpoint.endswith(contract.interaction.path)


class ByProtocol:
    """The producer port for the aggregator: each call to the adapter its route speaks."""

    def __init__(self, json: ProducerClient, rivta: ProducerClient) -> None:
        self._json, self._rivta = json, rivta

    async def fetch(self, endpoint: str, target: Target, patient_id: str,
                    budget_s: float) -> TargetResult:
        client = self._rivta if speaks_rivta(endpoint, target.category) else self._json
        return await client.fetch(endpoint, target, patient_id, budget_s)
