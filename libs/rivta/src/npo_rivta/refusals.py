"""The platform's request guard on a SOAP front end's paths: its refusals (no token with a body,
a body too large, too many requests, a token for another audience) answered as SOAP faults with
the same codes, like every other refusal there (``npo_platform.guard``, ``GUARD_REFUSAL``)."""

from __future__ import annotations

from collections.abc import Collection

from starlette.responses import Response
from starlette.types import Scope

from npo_platform.guard import Refusal
from npo_platform.problems import Problem
from npo_rivta.soap import CONTENT_TYPE, FAULT_STATUS, SoapFault


def soap_refusals(paths: Collection[str]) -> Refusal:
    """Render the guard's refusals on ``paths`` as faults; elsewhere problem details (None)."""
    soap_paths = frozenset(paths)

    def render(scope: Scope, problem: Problem) -> Response | None:
        if scope.get("path") not in soap_paths:
            return None
        return Response(SoapFault(problem.code, problem.detail).to_bytes(), status_code=FAULT_STATUS,
                        media_type=CONTENT_TYPE, headers=problem.headers)

    return render
