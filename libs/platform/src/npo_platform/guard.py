"""The guard every service's HTTP requests pass before their route: authentication before a body
is read, and a rate per caller.

``RequestGuard`` (ASGI middleware, installed by ``create_service_app``):

- A request that carries a body (``Content-Length`` above 0, or a chunked one) must carry a
  valid bearer token: it is verified from the headers before any byte of the body is read, and
  refused with 401 otherwise, so unauthenticated bodies cost nothing.
- A body is at most its path's limit (``allow_bodies(app, {path: bytes})``, else the service's
  ``max_body_bytes``): a larger ``Content-Length`` is refused with 413 before the body is read,
  and a chunked body is counted as it arrives and refused (413) once past the limit, so no more
  than the limit is ever held.
- Every request with a bearer token is rate-limited per user (the token's subject) and per
  client system (its ``client_id`` claim, when the issuer sets one): 429 with ``Retry-After``.
  Platform services calling on their own behalf (the ``system`` role) are not limited: their
  load is their users', limited where those call in. Nor are ``GET`` requests at the paths a
  service names unmetered (``unmetered_gets``: a SOAP front end's WSDLs and schemas, static and
  answered without a token, which a client builds itself from in a burst).

The limiter is in-process, per replica (no round trip on the hot path): with N replicas behind a
load balancer a caller gets up to N times the configured rate. The algorithm is
pyrate-limiter's GCRA (a leaky bucket kept as one timestamp per rate and caller); this module
only keeps one state per caller and forgets callers whose bucket has drained.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from math import ceil
from typing import Any

from pyrate_limiter import GCRA, Duration, Rate
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from npo_platform.fhir_http import problem_outcome
from npo_platform.identity import CLAIMS_SCOPE_KEY, Claims, Role, authenticate
from npo_platform.problems import Problem, http_problem

_UNITS = {"second": Duration.SECOND, "minute": Duration.MINUTE, "hour": Duration.HOUR}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)\s*$")
PRUNE_EVERY_MS = 60_000
# On ``app.state``: body limits per fixed path (``allow_bodies``), and how a refusal is rendered
# on a path (a SOAP front end's faults; None: problem details).
BODY_LIMITS = "guard_body_limits"
FHIR_PATHS = "/fhir/"  # FHIR REST routes (npo_platform.fhir_http): refusals are OperationOutcomes
GUARD_REFUSAL = "guard_refusal"
UNMETERED_GETS = "guard_unmetered_gets"
Refusal = Callable[[Scope, Problem], ASGIApp | None]
# For benchmarks driving one token at hundreds of requests a second: the limiter still runs on
# every request (its cost is in the figures) with as many rates as the default, never reached.
BENCH_RATE_LIMIT = "1000000/second;100000000/minute"


def parse_rates(text: str) -> list[Rate]:
    """``"20/second;600/minute"`` → pyrate-limiter rates; an empty text means no limit."""
    rates = []
    for part in filter(str.strip, text.split(";")):
        found = _RATE.match(part)
        if found is None:
            raise ValueError(f"a rate is 'N/second', 'N/minute' or 'N/hour', not {part!r}")
        rates.append(Rate(int(found[1]), _UNITS[found[2]]))
    return rates


class KeyedRateLimiter:
    """One GCRA state per key; a key whose bucket has drained is forgotten (it equals a new one)."""

    def __init__(self, rates: list[Rate], clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000):
        self._rates = sorted(rates, key=lambda r: r.interval)
        self._gcra = GCRA()
        self._initial = self._gcra.initial(self._rates)
        self._states: dict[str, tuple[float, ...]] = {}
        self._clock = clock
        self._pruned = clock()

    def retry_after_ms(self, key: str) -> int | None:
        """Spend one unit for ``key``: None when admitted, else how long until it would be."""
        now = self._clock()
        state, decision = self._gcra.step(self._rates, self._states.get(key, self._initial), now, 1)
        if decision.allowed:
            self._states[key] = state
            if now - self._pruned > PRUNE_EVERY_MS:
                self._prune(now)
            return None
        return decision.retry_after_ms or 1

    def _prune(self, now_ms: int) -> None:
        drained = now_ms * 1000  # GCRA's states are microseconds
        self._states = {k: s for k, s in self._states.items() if max(s) > drained}
        self._pruned = now_ms


class RequestGuard:
    """ASGI middleware: authenticate before a body is read; limit each caller's rate."""

    def __init__(self, app: ASGIApp, *, max_body: int, per_user: str = "", per_client: str = "") -> None:
        self.app = app
        self._max_body = max_body
        self._users = _limiter(per_user)
        self._clients = _limiter(per_client)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization, length, chunked = _read_headers(scope["headers"])
        limit = self._body_limit(scope)
        try:
            if authorization is not None:
                claims = authenticate(scope, authorization)
                scope[CLAIMS_SCOPE_KEY] = claims
                if not _unmetered(scope):
                    self._limit(claims)
            elif length or chunked:
                authenticate(scope, None)  # raises the route's own 401 (token.missing)
            if length is not None and length > limit:
                raise http_problem(HTTPException(413))  # as the routes answer one mid-body
        except Problem as problem:
            await _refusal(scope, problem)(scope, receive, send)
            return
        await self.app(scope, _counted(receive, limit) if chunked else receive, send)

    def _body_limit(self, scope: Scope) -> int:
        limits = getattr(scope["app"].state, BODY_LIMITS, None)
        return limits.get(scope.get("path", ""), self._max_body) if limits else self._max_body

    def _limit(self, claims: Claims) -> None:
        if Role.SYSTEM in claims.roles:
            return
        for limiter, key, who in ((self._users, claims.sub, "user"),
                                  (self._clients, claims.client_id, "client system")):
            if limiter is None or not key:
                continue
            wait_ms = limiter.retry_after_ms(key)
            if wait_ms is not None:
                seconds = str(max(1, ceil(wait_ms / 1000)))
                raise Problem(429, "rate.limited", f"Too many requests from this {who}; retry later.",
                              headers={"Retry-After": seconds})


def allow_bodies(app: Any, limits: Mapping[str, int]) -> None:
    """Let the routes at these fixed paths take bodies up to their size (bytes) instead of the
    service's ``max_body_bytes``."""
    state = app.state
    setattr(state, BODY_LIMITS, {**(getattr(state, BODY_LIMITS, None) or {}), **limits})


def unmetered_gets(app: Any, paths: Iterable[str]) -> None:
    """Let ``GET`` requests at these fixed paths through without counting them against a rate."""
    state = app.state
    setattr(state, UNMETERED_GETS, frozenset(getattr(state, UNMETERED_GETS, frozenset())) | set(paths))


def _unmetered(scope: Scope) -> bool:
    paths: frozenset[str] = getattr(scope["app"].state, UNMETERED_GETS, frozenset())
    return scope.get("method") == "GET" and scope.get("path") in paths


def _refusal(scope: Scope, problem: Problem) -> ASGIApp:
    """The problem as the path's protocol answers it: ``app.state.guard_refusal`` may render it
    (a SOAP fault on a RIV-TA path); FHIR's paths answer an OperationOutcome; else problem
    details."""
    render: Refusal | None = getattr(scope["app"].state, GUARD_REFUSAL, None)
    rendered = render(scope, problem) if render else None
    if rendered is not None:
        return rendered
    return problem_outcome(problem) if scope.get("path", "").startswith(FHIR_PATHS) else problem.response()


def _limiter(rates: str) -> KeyedRateLimiter | None:
    parsed = parse_rates(rates)
    return KeyedRateLimiter(parsed) if parsed else None


def _counted(receive: Receive, limit: int) -> Receive:
    """``receive`` that refuses (413, as the routes' problem handler answers it) past ``limit``."""
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413)
        return message

    return counted


def _read_headers(headers: Any) -> tuple[str | None, int | None, bool]:
    """The Authorization header's value, the declared Content-Length, and whether the body is
    sent chunked (with no length declared)."""
    authorization, length, chunked = None, None, False
    for name, value in headers:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"content-length":
            length = int(value) if value.strip().isdigit() else None
        elif name == b"transfer-encoding":
            chunked = True
    return authorization, length, chunked and length is None
