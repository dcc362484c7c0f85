"""FHIR routes answer every error as an OperationOutcome; searchset Bundles (unit tests)."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI, HTTPException

from npo_platform.fhir import FHIR_JSON, operation_outcome, searchset
from npo_platform.fhir_http import FhirProblem, FhirRoute
from npo_platform.problems import Problem, install_problem_handlers


def _app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    router = APIRouter(prefix="/fhir", route_class=FhirRoute)

    @router.get("/problem")
    async def problem() -> None:
        raise Problem(401, "token.missing", "No token.", headers={"WWW-Authenticate": "Bearer"})

    @router.get("/unsupported")
    async def unsupported() -> None:
        raise FhirProblem(400, "search.parameter_unsupported", "No such parameter.", "not-supported")

    @router.get("/typed")
    async def typed(n: int) -> int:
        return n

    @router.get("/http")
    async def http() -> None:
        raise HTTPException(405, "Not here")

    @router.get("/too-large")
    async def too_large() -> None:  # as the request guard raises it past a chunked body's limit
        raise HTTPException(413)

    @router.get("/crash")
    async def crash() -> None:
        raise RuntimeError("191212121212 broke it")

    @app.get("/plain")
    async def plain() -> None:
        raise Problem(403, "role.missing", "No role.")

    app.include_router(router)
    return app


async def _get(path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get(path)


async def test_errors_of_fhir_routes_are_operation_outcomes_with_the_problem_code() -> None:
    expected = {
        "/fhir/problem": (401, "login", "token.missing", "error"),
        "/fhir/unsupported": (400, "not-supported", "search.parameter_unsupported", "error"),
        "/fhir/typed?n=x": (400, "invalid", "request.invalid", "error"),
        "/fhir/http": (405, "not-supported", "http.405", "error"),
        "/fhir/too-large": (413, "too-long", "request.too_large", "error"),  # the problems' code
        "/fhir/crash": (500, "exception", "internal", "fatal"),
    }
    for path, (status, issue_type, code, severity) in expected.items():
        answer = await _get(path)
        assert answer.status_code == status, path
        assert answer.headers["content-type"] == FHIR_JSON
        [issue] = answer.json()["issue"]
        assert (issue["code"], issue["details"]["coding"][0]["code"], issue["severity"]) == (
            issue_type, code, severity)
        assert "191212121212" not in answer.text
    assert (await _get("/fhir/problem")).headers["www-authenticate"] == "Bearer"


async def test_other_routes_keep_problem_details() -> None:
    answer = await _get("/plain")
    assert answer.status_code == 403
    assert answer.json()["code"] == "role.missing"


def test_a_searchset_marks_matches_and_the_outcome_and_has_no_empty_entry() -> None:
    event = {"resourceType": "AuditEvent", "id": "2f1f6c1e-9d8e-4b43-8d4c-1d2b3f4a5b6c"}
    note = operation_outcome([])
    found = searchset([event], links=[("self", "http://x/fhir?_page=a")], outcome=note)

    assert found["type"] == "searchset"
    assert [e["search"]["mode"] for e in found["entry"]] == ["match", "outcome"]
    assert found["entry"][0]["fullUrl"] == f"urn:uuid:{event['id']}"
    assert found["link"] == [{"relation": "self", "url": "http://x/fhir?_page=a"}]
    assert "entry" not in searchset([])
