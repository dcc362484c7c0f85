"""FHIR REST conventions for a router: every error answered as an OperationOutcome.

FHIR clients expect an ``OperationOutcome`` (``application/fhir+json``) with the HTTP status of the
error, where the rest of the platform answers problem details. ``FhirRoute`` as a router's
``route_class`` turns the same errors — a ``Problem`` raised by the route or by a dependency (a
missing token 401, a missing role 403), request validation, HTTP errors such as a body over the
route's limit, and anything unexpected — into an OperationOutcome whose issue carries the
problem's stable code (``urn:npo:problem``), so a code means the same in both forms.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from npo_platform.fhir import FHIR_JSON, OutcomeIssue, operation_outcome
from npo_platform.problems import Problem, http_problem

logger = logging.getLogger(__name__)

# FHIR's IssueType for an HTTP status, when the error names none of its own.
_ISSUE_TYPES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
                406: "not-supported", 413: "too-long", 415: "not-supported", 422: "processing",
                429: "throttled", 503: "transient", 504: "timeout"}


class FhirProblem(Problem):
    """A ``Problem`` naming FHIR's issue type too (``not-supported``, ``value``…)."""

    def __init__(self, status: int, code: str, detail: str, issue_type: str) -> None:
        super().__init__(status, code, detail)
        self.issue_type = issue_type


def outcome_response(status: int, code: str, detail: str, *, issue_type: str | None = None,
                     headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An OperationOutcome of one error issue, answered with ``status``."""
    kind = issue_type or _ISSUE_TYPES.get(status, "exception")
    issue = OutcomeIssue("fatal" if status >= 500 else "error", kind, detail, code)
    return JSONResponse(operation_outcome([issue]), status_code=status, headers=dict(headers or {}),
                        media_type=FHIR_JSON)


def problem_outcome(problem: Problem) -> JSONResponse:
    return outcome_response(problem.status, problem.code, problem.detail,
                            issue_type=getattr(problem, "issue_type", None), headers=problem.headers)


class FhirRoute(APIRoute):
    """A route whose errors are OperationOutcomes (use as an APIRouter's ``route_class``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except Problem as problem:
                return problem_outcome(problem)
            except RequestValidationError:
                # Where and why only: echoing the input could repeat a personal number.
                return outcome_response(400, "request.invalid", "The request does not match the API.")
            except HTTPException as error:  # a chunked body past the guard's limit too (413)
                return problem_outcome(http_problem(error))
            except Exception:
                logger.exception("unhandled error in %s %s", request.method, self.path)  # no URL: a PNR
                return outcome_response(500, "internal", "An unexpected error occurred.")

        return answer
