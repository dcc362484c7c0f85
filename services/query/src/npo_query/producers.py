"""The producer port (``ProducerClient``: one producer, one category, a time budget, a status
that is never unknown) and its JSON adapter, continuation pages followed (producers_riv.py is
the RIV-TA one)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from ipaddress import ip_address
from typing import Any, Protocol

import aiohttp
import aiohttp.abc
from aiohttp.abc import ResolveResult
from opentelemetry import trace
from opentelemetry.context import Context
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from yarl import URL

from .clients import traced_headers
from .domain import Cause, Record, Status, Target, TargetResult
from .routing import EndpointPolicy

tracer = trace.get_tracer(__name__)


ProducerTokenSource = Callable[[str], str]  # a producer's endpoint -> a token bound to it


class ProducerClient(Protocol):
    async def fetch(self, endpoint: str, target: Target, patient_id: str,
                    budget_s: float) -> TargetResult: ...


class _Professional(BaseModel):
    model_config = ConfigDict(extra="ignore")
    author_time: str = Field(alias="authorTime", pattern=r"^[0-9]{14}$")
    care_unit: str = Field("", alias="healthcareProfessionalCareUnitHSAId", max_length=64)
    care_giver: str = Field("", alias="healthcareProfessionalCareGiverHSAId", max_length=64)


class _PatientRef(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str


class _Header(BaseModel):
    model_config = ConfigDict(extra="ignore")
    document_id: str = Field(alias="documentId", min_length=1)
    source_system: str = Field(alias="sourceSystemHSAId", min_length=1)
    patient: _PatientRef = Field(alias="patientId")
    professional: _Professional = Field(alias="accountableHealthcareProfessional")
    # The record contract's social-services marker (README): information documented under SoL.
    social_services: bool = Field(False, alias="socialServices", strict=True)


class _Document(BaseModel):
    model_config = ConfigDict(extra="ignore")
    header: _Header


class _Page(BaseModel):
    model_config = ConfigDict(extra="ignore")
    records: list[dict[str, Any]]
    continuation_token: str | None = Field(None, alias="continuationToken")


_DOCUMENTS = TypeAdapter(list[_Document])


class InvalidAnswer(Exception):
    """The producer answered, but not with records of this patient in the contract's shape."""


class _HttpFailure(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class HttpProducerClient:
    """RIVTA-style category queries over a pooled client, continuation followed to the end.

    aiohttp rather than httpx here: the fan-out to many producers at once is the hot path, and
    httpx's pool was many times slower than aiohttp's under concurrent calls
    (docs/performance/code-notes.md).
    Per call only what must be: the budget is one ``asyncio.timeout`` (aiohttp's own timeout
    carries only the connect bound, so no second timer per request), URLs are parsed once
    per endpoint and category, and the span is not made current (nothing runs inside it but
    this call; its context goes to the producer in the W3C headers all the same).
    """

    def __init__(self, http: aiohttp.ClientSession, token: ProducerTokenSource, *,
                 connect_timeout_s: float, page_size: int, max_pages: int) -> None:
        self._http, self._token = http, token
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s)
        self._page_size, self._max_pages = page_size, max_pages

    async def fetch(self, endpoint: str, target: Target, patient_id: str,
                    budget_s: float) -> TargetResult:
        began = time.perf_counter()
        url, text = self._url(endpoint, target.category)
        span = tracer.start_span(
            "producer call", kind=trace.SpanKind.CLIENT,
            attributes={"npo.logical_address": target.logical_address,
                        "npo.category": target.category, "url.full": text},
        )
        try:
            result = await self._fetch(endpoint, url, span, target, patient_id, budget_s, began)
            span.set_attribute("npo.status", result.status.value)
            if result.cause:
                span.set_attribute("npo.cause", result.cause)
            return result
        except Exception as error:  # a bug, not a producer's failure: on the span, then up
            span.record_exception(error)
            span.set_status(trace.StatusCode.ERROR, type(error).__name__)
            raise
        finally:
            span.end()

    async def _fetch(self, endpoint: str, url: URL, span: trace.Span, target: Target,
                     patient_id: str, budget_s: float, began: float) -> TargetResult:
        pages: list[_Page] = []
        try:
            async with asyncio.timeout(budget_s):
                await self._pages(endpoint, url, trace.set_span_in_context(span), target, patient_id,
                                  pages)
        except TimeoutError:  # aiohttp's connect timeout is a TimeoutError too
            return _failed(target, Cause.TIMEOUT, began, pages)
        except _HttpFailure as failure:
            return _failed(target, Cause.HTTP_STATUS, began, pages, failure.status)
        except (InvalidAnswer, aiohttp.ClientPayloadError):
            return _failed(target, Cause.INVALID_ANSWER, began, pages)
        except (aiohttp.ClientError, OSError):
            return _failed(target, Cause.CONNECTION_ERROR, began, pages)
        try:
            records = tuple(_records(pages, target, patient_id))
        except InvalidAnswer:
            return _failed(target, Cause.INVALID_ANSWER, began, pages)
        return TargetResult(target, Status.DATA_FROM_SOURCE, records=records,
                            duration_ms=_ms(began), pages=len(pages))

    def _url(self, endpoint: str, category: str) -> tuple[URL, str]:
        return _url(endpoint, category)

    async def _pages(self, endpoint: str, url: URL, traced: Context, target: Target,
                     patient_id: str, into: list[_Page]) -> None:
        body: dict[str, Any] = {"patientId": patient_id, "pageSize": self._page_size}
        while True:  # the token is bound to this producer's endpoint (tokens.ProducerTokens)
            headers = traced_headers(self._token(endpoint), traced) | {"Content-Type": "application/json"}
            async with self._http.post(url, data=json.dumps(body).encode(), headers=headers,
                                       timeout=self._timeout) as answer:
                if answer.status != 200:
                    raise _HttpFailure(answer.status)
                content = await answer.read()
            try:
                page = _Page.model_validate_json(content)
            except ValidationError:
                raise InvalidAnswer from None
            into.append(page)
            if page.continuation_token is None:
                return
            if len(into) >= self._max_pages:
                raise InvalidAnswer  # a producer that never stops paging
            body["continuationToken"] = page.continuation_token


class GuardedResolver(aiohttp.abc.AbstractResolver):
    """Name resolution for the producers' pool: a name that resolves only to addresses a route
    may not name (routing.EndpointPolicy: link-local, loopback unless allowed, ...) is not
    connected to, so a route cannot reach them through DNS either. (Addresses written in a
    route are checked when it is stored; aiohttp resolves only names.)"""

    def __init__(self, policy: EndpointPolicy) -> None:
        self._inner, self._policy = aiohttp.ThreadedResolver(), policy

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if not self._policy.forbids(ip_address(r["host"]))]
        if not allowed:
            raise OSError(f"{host} resolves only to addresses a producer may not have")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@lru_cache(maxsize=100_000)
def _url(endpoint: str, category: str) -> tuple[URL, str]:
    """The call's URL, parsed once per endpoint and category (no patient id: it travels in the
    body), and its text for the span."""
    text = f"{endpoint}/{category}"
    return URL(text), text


def _records(pages: list[_Page], target: Target, patient_id: str) -> Iterator[Record]:
    """The pages' records, their headers validated in one pass per page."""
    for page in pages:
        try:
            documents = _DOCUMENTS.validate_python(page.records)
        except ValidationError:
            raise InvalidAnswer from None
        for document, raw in zip(documents, page.records, strict=True):
            header = document.header
            if header.patient.id != patient_id:
                raise InvalidAnswer  # another patient's record must never reach this reader
            professional = header.professional
            yield Record(header.document_id, header.source_system, professional.author_time,
                         target.category, target.logical_address, raw, professional.care_giver,
                         professional.care_unit, header.social_services)


def _failed(target: Target, cause: Cause, began: float, pages: list[_Page],
            http_status: int | None = None) -> TargetResult:
    return TargetResult(target, Status.NO_DATA_SYNCH_FAILED, cause.value, http_status,
                        duration_ms=_ms(began), pages=len(pages))


def _ms(began: float) -> float:
    return round((time.perf_counter() - began) * 1000, 2)
