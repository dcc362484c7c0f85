"""Schemathesis against every service's OpenAPI, in process: no generated request may cause a 5xx.

Each app runs with its real lifespan (PostgreSQL, Kafka on isolated topics) and is called through
httpx's ASGI transport. Schemathesis (Hypothesis) generates the cases per operation — positive
and negative data — with a bearer token that holds every role, so the requests pass
authentication and reach the handlers; schemathesis' ``not_a_server_error`` check judges each
answer. Server-sent-event routes are left out: their answers never end, and the ASGI transport
waits for the whole body.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode

from npo_consent.config import ConsentSettings
from npo_consent.main import ConsentTopics
from npo_consent.main import create_app as consent_app
from npo_deploy.testing import TopicFactory
from npo_index.config import IndexSettings
from npo_index.main import create_app as index_app
from npo_platform.identity import Principal, Role, TokenVerifier, ensure_local_keypair, issue_token
from npo_platform.topics import ACCESS_EVENTS, CONSENT_EVENTS
from npo_query.config import QuerySettings
from npo_query.main import create_app as query_app
from npo_simulator.config import SimulatorSettings
from npo_simulator.server import create_app as simulator_app
from npo_simulator.store import RecordSource

pytestmark = pytest.mark.integration
MAX_EXAMPLES = 8  # per operation and generation mode: bounded, the whole module stays well under 2 min
# The same cases every run (a stable CI); NPO_FUZZ_RANDOM=1 explores new ones locally.
RANDOM = bool(os.environ.get("NPO_FUZZ_RANDOM"))
UNIT, GIVER = "SE2321000016-U001", "SE2321000016-G001"
# One token sends every generated case: rate limits would answer most with 429 and keep them
# from the handlers (the limits have their own tests).
UNLIMITED = {"rate_limit_user": "", "rate_limit_client": ""}
ALL_ROLES = Principal(
    sub="SE2321000016-FUZZ", name="Fuzz", roles=frozenset(Role), care_unit=UNIT, care_giver=GIVER,
    assignment="A1", purpose="care", patient="191212121212",
    logical_addresses=frozenset({"SE2321000016-L001"}),
)


def _collect(operation: Any, mode: GenerationMode) -> list[Any]:
    """Cases Hypothesis generates for one operation (drawn here, sent later from the event loop)."""
    cases: list[Any] = []

    @given(operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=not RANDOM)
    def draw(case: Any) -> None:
        cases.append(case)

    with contextlib.suppress(Unsatisfiable):  # nothing to make negative (no parameters, no body)
        draw()
    return cases


def _streams(operation: Any) -> bool:
    responses = operation.definition.raw.get("responses", {})
    return any("text/event-stream" in (r.get("content") or {}) for r in responses.values())


async def _fuzz(app: FastAPI, token: str) -> list[str]:
    schema = schemathesis.openapi.from_dict(app.openapi())
    failures: list[str] = []
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a crash is a 500
    async with (app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as http):
        for result in schema.get_all_operations():
            operation = result.ok()
            if _streams(operation):
                continue
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for case in _collect(operation, mode):
                    failures += await _send(http, case, token)
    return failures


async def _send(http: httpx.AsyncClient, case: Any, token: str) -> list[str]:
    kwargs = case.as_transport_kwargs(base_url="http://test")
    headers = {**(kwargs.pop("headers", None) or {}), "Authorization": f"Bearer {token}"}
    kwargs.pop("cookies", None)
    data = kwargs.get("data")
    form = data if isinstance(data, dict) else None  # a form body (FHIR's search by POST)
    request = http.build_request(kwargs.pop("method"), kwargs.pop("url"), headers=headers,
                                 params=kwargs.get("params"), json=kwargs.get("json"), data=form,
                                 content=None if form is not None else data, files=kwargs.get("files"))
    response = await http.send(request)
    try:
        case.validate_response(response, checks=[not_a_server_error])
    except FailureGroup as failure:
        return [f"{case.method} {case.path}: {response.status_code} {response.text[:300]}\n"
                f"  {case.as_curl_command()[:600]}\n  {failure}"]
    return []


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TokenVerifier, str]:
    """The local issuer's key pair in a temporary state dir, its verifier and an all-roles token."""
    state = tmp_path_factory.mktemp("npo-fuzz-state")
    private, public = ensure_local_keypair(state / "keys")
    token = issue_token(private.read_bytes(), ALL_ROLES, timedelta(minutes=30))
    return public, TokenVerifier(public.read_bytes()), token


Factory = Callable[[dict[str, Any], TokenVerifier, TopicFactory], FastAPI]


def _index(common: dict[str, Any], verifier: TokenVerifier, topics: TopicFactory) -> FastAPI:
    run = uuid.uuid4().hex[:8]
    return index_app(IndexSettings(**common, db_schema=f"fz_idx_{run}", consumer_group=f"fz-{run}",
                                   updates_topic=topics(), changes_topic=topics(),
                                   find_content_systems=frozenset({ALL_ROLES.sub})),
                     token_verifier=verifier)


def _consent(common: dict[str, Any], verifier: TokenVerifier, topics: TopicFactory) -> FastAPI:
    run = uuid.uuid4().hex[:8]
    wanted = ConsentTopics(replace(ACCESS_EVENTS, name=topics()), replace(CONSENT_EVENTS, name=topics()))
    return consent_app(ConsentSettings(**common, db_schema=f"fz_consent_{run}",
                                       consumer_group=f"fz-{run}"), topics=wanted)


def _query(common: dict[str, Any], verifier: TokenVerifier, topics: TopicFactory) -> FastAPI:
    from npo_query.main import Parts

    run = uuid.uuid4().hex[:8]
    settings = QuerySettings(**common, db_schema=f"fz_query_{run}", index_url="http://127.0.0.1:9",
                             consent_url="http://127.0.0.1:9", access_topic=topics(),
                             consent_topic=topics(), changes_topic=topics(), producer_timeout_s=1.0)
    return query_app(settings, parts=Parts(offset_reset="earliest"), token_verifier=verifier)


def _audit(common: dict[str, Any], verifier: TokenVerifier, topics: TopicFactory) -> FastAPI:
    from npo_audit.config import AuditSettings
    from npo_audit.main import create_app as audit_app

    run = uuid.uuid4().hex[:8]
    settings = AuditSettings(
        DATABASE_URL=common["database_url"], KAFKA_BOOTSTRAP_SERVERS=common["kafka_bootstrap_servers"],
        NPO_STATE_DIR=common["state_dir"], db_schema=f"fz_audit_{run}", consumer_group=f"fz-{run}",
        access_topic=topics(3), consent_topic=topics(3), **UNLIMITED,
    )
    return audit_app(settings, token_verifier=verifier)


def _simulator(common: dict[str, Any], verifier: TokenVerifier, topics: TopicFactory) -> FastAPI:
    return simulator_app(SimulatorSettings(population=2_000, seed=5, **UNLIMITED),
                         RecordSource(2_000, seed=5),
                         token_verifier=verifier)


@pytest.mark.parametrize("factory", [_index, _consent, _query, _audit, _simulator],
                         ids=["index", "consent", "query", "audit", "simulator"])
async def test_no_generated_request_makes_a_service_fail_with_a_server_error(
    factory: Factory, keys: tuple[Path, TokenVerifier, str], database_url: str,
    kafka_bootstrap_servers: str, kafka_topic_factory: TopicFactory,
) -> None:
    public, verifier, token = keys
    common: dict[str, Any] = {"kafka_bootstrap_servers": kafka_bootstrap_servers,
                              "database_url": database_url, "state_dir": public.parent.parent,
                              "jwt_public_key_path": public, **UNLIMITED}
    app = factory(common, verifier, kafka_topic_factory)
    failures = await _fuzz(app, token)
    assert not failures, "\n".join(failures)


# What schemathesis found (each was a 500 from PostgreSQL): NUL in text, integers beyond bigint.
FOUND = [
    (_index, "POST", "/find-content", {"registeredResidentIdentification": "191212121212",
                                       "serviceDomain": "riv:clinicalprocess:a\x00"}),
    (_query, "POST", "/v1/routing/authorisations/delete",
     {"consumer_system": "SE1\x00", "logical_address": "SE2", "category": "*"}),
    (_query, "DELETE", "/v1/routing/routes/SE1%00", None),
    (_audit, "PUT", "/audit/register", {"persons": [{"person": "p\x00", "surname": "S"}]}),
    (_audit, "POST", "/audit/flags/search", {"after_flag_id": 2**64}),
    (_audit, "POST", "/audit/reviews", {"flag_id": -(2**63), "note": "n"}),
]


@pytest.mark.parametrize(("factory", "method", "path", "body"), FOUND,
                         ids=[f"{method} {path}" for _, method, path, _ in FOUND])
async def test_what_the_fuzzing_found_is_refused_as_invalid(
    factory: Factory, method: str, path: str, body: dict[str, Any] | None,
    keys: tuple[Path, TokenVerifier, str], database_url: str, kafka_bootstrap_servers: str,
    kafka_topic_factory: TopicFactory,
) -> None:
    public, verifier, token = keys
    common: dict[str, Any] = {"kafka_bootstrap_servers": kafka_bootstrap_servers,
                              "database_url": database_url, "state_dir": public.parent.parent,
                              "jwt_public_key_path": public, **UNLIMITED}
    app = factory(common, verifier, kafka_topic_factory)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://test") as http):
        answer = await http.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "request.invalid"
