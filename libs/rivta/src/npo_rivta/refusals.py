"""The platform's request guard on a SOAP front end's paths: its refusals (no token with a body,
a body too large, too many requests, a token for another audience) answered as SOAP faults with
the same codes, like every other refusal there (``npo_platform.guard``, ``GUARD_REFUSAL``).

A fault is answered with 500 as SOAP 1.1 says, except where HTTP's own status is what a client
or a proxy acts on: 413 (the body is too large) and 429 (with ``Retry-After``: back off)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from starlette.responses import Response
from starlette.types import Scope

from npo_platform.guard import GUARD_REFUSAL, Refusal, allow_bodies, unmetered_gets
from npo_platform.problems import Problem
from npo_rivta.soap import CONTENT_TYPE, FAULT_STATUS, SoapFault

HTTP_STATUSES = frozenset({413, 429})  # kept on a fault: HTTP's clients and proxies act on them


def as_fault(problem: Problem) -> SoapFault:
    """The problem as a fault with its code, and its status when HTTP's own is meant."""
    status = problem.status if problem.status in HTTP_STATUSES else FAULT_STATUS
    return SoapFault(problem.code, problem.detail, status=status)


def soap_refusals(paths: Collection[str]) -> Refusal:
    """Render the guard's refusals on ``paths`` as faults; elsewhere problem details (None)."""
    soap_paths = frozenset(paths)

    def render(scope: Scope, problem: Problem) -> Response | None:
        if scope.get("path") not in soap_paths:
            return None
        fault = as_fault(problem)
        return Response(fault.to_bytes(), status_code=fault.status, media_type=CONTENT_TYPE,
                        headers=problem.headers)

    return render


def guard_soap_paths(app: Any, paths: Collection[str], max_body_bytes: int | None = None) -> None:
    """Tell the app's request guard that ``paths`` speak SOAP: its refusals there are faults,
    their bodies are at most ``max_body_bytes`` (else the service's limit), and their ``GET``
    (``?wsdl``, ``?xsd=``: static) counts against no rate."""
    setattr(app.state, GUARD_REFUSAL, soap_refusals(paths))
    if max_body_bytes is not None:
        allow_bodies(app, dict.fromkeys(paths, max_body_bytes))
    unmetered_gets(app, paths)
