"""Serving RIV-TA responders over HTTP (FastAPI): one URL per responder, ``POST`` a SOAP
request, ``GET ?wsdl`` its WSDL (``?xsd=<name>`` the schemas it imports).

A service's SOAP front end gives, per responder, the roles that may call it, its own checks of
the envelope (the ``LogicalAddress`` it answers to, the schema, with its own fault codes) and
the handler that calls its use case. Everything around that is here, the same for every
service: the platform headers (read, on the span, the correlation id answered back), the token
(its refusal a fault with the token's code), the body bounded while it is read, safe parsing,
the operation and ``SOAPAction`` checked, and every refusal answered as a fault with a stable
code and logged without the message's content.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from fastapi import APIRouter, Request, Response
from fastapi.security import HTTPBearer
from lxml import etree
from opentelemetry import trace
from starlette.exceptions import HTTPException
from starlette.status import HTTP_413_CONTENT_TOO_LARGE

from npo_platform.identity import Claims, Role, bearer_claims, require_roles
from npo_platform.problems import Problem, http_problem
from npo_rivta import wsdl
from npo_rivta.contracts import Interaction
from npo_rivta.headers import CORRELATION_ID, PlatformHeaders
from npo_rivta.refusals import as_fault
from npo_rivta.soap import CONTENT_TYPE, Envelope, SoapFault, envelope, read_envelope
from npo_rivta.xml import XmlRejected, parse

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Answer:
    """A handler's answer: the body element and any SOAP header blocks."""

    body: etree._Element
    headers: Sequence[etree._Element] = ()


@dataclass(frozen=True)
class Call:
    """One received call, checked: who calls, the envelope, the platform headers."""

    request: Request
    claims: Claims
    envelope: Envelope
    platform: PlatformHeaders


Handler = Callable[[Call], Awaitable[Answer]]
Check = Callable[[Request, Interaction, Envelope], None]  # raises SoapFault


@dataclass(frozen=True)
class Responder:
    """One responder a service serves."""

    interaction: Interaction
    roles: tuple[Role, ...]
    handler: Handler
    check: Check  # the service's own checks of the envelope (address, schema)
    max_bytes: Callable[[Request], int]
    log: logging.Logger = field(default=logging.getLogger(__name__))


def serve(router: APIRouter, responder: Responder) -> None:
    """Add the responder's ``POST`` and ``GET ?wsdl`` routes at its interaction's path."""
    path = responder.interaction.path
    router.add_api_route(path, _post(responder), methods=["POST"])
    router.add_api_route(path, _get(responder.interaction), methods=["GET"])


def _post(responder: Responder) -> Callable[[Request], Awaitable[Response]]:
    interaction = responder.interaction

    async def post(request: Request) -> Response:
        platform = PlatformHeaders.of(request.headers)
        annotate(trace.get_current_span(), interaction, platform)
        answer_headers = {CORRELATION_ID: platform.correlation_id}
        try:
            claims = await token_claims(request, responder.roles)
            env = await receive(request, interaction, responder.max_bytes(request))
            responder.check(request, interaction, env)
            answer = await responder.handler(Call(request, claims, env, platform))
        except SoapFault as fault:
            responder.log.info("riv %s refused: %s (consumer %s, correlation %s)",
                               interaction.name, fault.code, platform.original_consumer,
                               platform.correlation_id)
            return Response(fault.to_bytes(), status_code=fault.status, media_type=CONTENT_TYPE,
                            headers=answer_headers)
        return Response(envelope(answer.body, answer.headers), media_type=CONTENT_TYPE,
                        headers=answer_headers)

    return post


def annotate(span: trace.Span, interaction: Interaction, platform: PlatformHeaders) -> None:
    """The call's RIV-TA facts on its span (HSA-ids and ids only, never a person's)."""
    span.set_attribute("rivta.interaction", interaction.soap_action)
    span.set_attribute("rivta.correlation_id", platform.correlation_id)
    if platform.original_consumer:
        span.set_attribute("rivta.original_consumer", platform.original_consumer)


def _get(interaction: Interaction) -> Callable[[Request], Awaitable[Response]]:
    async def get(request: Request) -> Response:
        """``?wsdl``: the WSDL; ``?xsd=<name>``: one of the schemas it imports."""
        location = str(request.url.remove_query_params(["wsdl", "xsd"]))
        name = request.query_params.get("xsd")
        if name is not None:
            try:
                return Response(wsdl.schema_bytes(name, base_url=location), media_type="text/xml")
            except KeyError:
                raise Problem(404, "schema.unknown", "No such schema here.") from None
        if "wsdl" not in request.query_params:
            raise Problem(404, "wsdl.ask", "Ask for ?wsdl (or POST a SOAP request).")
        return Response(wsdl.wsdl_bytes(interaction, location), media_type="text/xml")

    return get


async def token_claims(request: Request, roles: Sequence[Role]) -> Claims:
    """The token's claims as on every other route; its refusal becomes a fault with its code."""
    try:
        claims = await bearer_claims(request, await _bearer(request))
        return await require_roles(*roles)(claims)
    except Problem as problem:
        raise as_fault(problem) from None


async def receive(request: Request, interaction: Interaction, max_bytes: int) -> Envelope:
    """The request's envelope: bounded, safely parsed, for this operation (``xml.*``,
    ``soap.not_envelope``, ``soap.wrong_operation``)."""
    env = read_envelope(_parsed(await read_body(request, max_bytes), max_bytes))
    action = request.headers.get("soapaction", "").strip().strip('"')
    if env.body.tag != interaction.request or (action and action != interaction.soap_action):
        raise SoapFault("soap.wrong_operation",
                        f"this endpoint answers {interaction.soap_action} only")
    return env


def _parsed(data: bytes, max_bytes: int) -> etree._Element:
    try:
        return parse(data, max_bytes=max_bytes)
    except XmlRejected as error:
        raise SoapFault(error.code, error.detail) from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it exceeds ``limit`` (declared or streamed),
    or the platform's request guard's own limit for the path (``request.too_large``)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except HTTPException as error:  # the guard counted a chunked body past the path's limit
        if error.status_code != HTTP_413_CONTENT_TOO_LARGE:
            raise
        raise as_fault(http_problem(error)) from None  # its code and text, as a fault
    return b"".join(chunks)


def _too_large(limit: int) -> SoapFault:
    return SoapFault("xml.too_large", f"the message is larger than {limit} bytes",
                     status=HTTP_413_CONTENT_TOO_LARGE)
