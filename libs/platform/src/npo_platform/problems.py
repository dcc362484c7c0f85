"""RFC 9457 problem details for every NPO HTTP API: the ``Problem`` exception and its handlers.

A body has ``type``, ``title``, ``status``, ``detail`` and a stable machine ``code``; ``type``
is ``urn:npo:problem:<code>``. ``install_problem_handlers(app)`` also turns request validation
errors into 422 ``request.invalid``, other HTTP errors into ``http.<status>`` and anything
unexpected into 500 ``internal`` without leaking the cause to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"

logger = logging.getLogger(__name__)


class Problem(Exception):
    """An error answered as problem details; raise it from a route or dependency."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})

    def body(self) -> dict[str, Any]:
        return {
            **self.extensions,
            "type": f"urn:npo:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.body(),
            status_code=self.status,
            headers=self.headers,
            media_type=PROBLEM_MEDIA_TYPE,
        )


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem details."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return exc.response()


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Location and reason only: echoing the rejected input could repeat a personal number.
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg"), "type": error.get("type")}
        for error in exc.errors()
    ]
    problem = Problem(
        422,
        "request.invalid",
        "The request does not match the API's schema.",
        title="Invalid request",
        extensions={"errors": errors},
    )
    return problem.response()


TOO_LARGE = "request.too_large"
_CODES = {413: (TOO_LARGE, "The request body is larger than this route accepts.")}


def http_problem(exc: StarletteHTTPException) -> Problem:
    """An HTTP error (the framework's, or the request guard's 413 mid-body) as a Problem with
    its stable code."""
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    code, detail = _CODES.get(exc.status_code, (f"http.{exc.status_code}", detail))
    return Problem(exc.status_code, code, detail, headers=exc.headers)


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return http_problem(exc).response()


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The route template, not the URL: a path may carry a patient id.
    route = getattr(request.scope.get("route"), "path", "<unmatched>")
    logger.error(
        "unhandled error in %s %s",
        request.method,
        route,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return Problem(500, "internal", "An unexpected error occurred.").response()
