"""The lean overview route answers every request exactly as FastAPI's own handler does, and
the answer built without models is what the OpenAPI schema's models say."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from query_fixtures import VERIFIER, clinician, token

from npo_platform.identity import ClinicianClaims, Role
from npo_platform.service import create_service_app
from npo_query import lean_route
from npo_query.api import (
    OverviewRequest,
    ProducerOut,
    RecordOut,
    producer_json,
    record_json,
)
from npo_query.config import QuerySettings
from npo_query.domain import Record, Status, Target, TargetResult
from npo_query.lean_route import LeanClinicianRoute

PATIENT = "191212121212"


async def _echo(body: OverviewRequest, request: Request, claims: ClinicianClaims) -> Response:
    return Response(f"{claims.sub} {','.join(body.categories)}", media_type="text/plain")


def _app() -> FastAPI:
    app = create_service_app(QuerySettings(), title="t", distribution="npo-query",
                             token_verifier=VERIFIER)
    router = APIRouter(prefix="/v1")
    router.add_api_route("/lean", _echo, methods=["POST"], route_class_override=LeanClinicianRoute)
    router.add_api_route("/standard", _echo, methods=["POST"])
    app.include_router(router)
    return app


def _requests() -> list[tuple[str, dict[str, Any]]]:
    good = {"patientId": PATIENT, "categories": ["notes", "1"]}
    json_type = {"Content-Type": "application/json"}
    return [
        ("ordinary", {"json": good, "headers": clinician()}),
        ("no token", {"json": good}),
        ("not a bearer", {"json": good, "headers": {"Authorization": "Basic eDp5"}}),
        ("bad token", {"json": good, "headers": {"Authorization": "Bearer nonsense"}}),
        ("wrong role", {"json": good, "headers": {
            "Authorization": f"Bearer {token(Role.PRODUCER)}"}}),
        ("invalid body", {"json": {"patientId": PATIENT, "x": 1}, "headers": clinician()}),
        ("invalid body, no token", {"json": {"categories": ["nonsense"]}}),
        ("malformed JSON, no token", {"content": b"{", "headers": json_type}),
        ("no body", {"headers": clinician() | json_type}),
        ("text body", {"content": b"patientId", "headers": clinician()
                       | {"Content-Type": "text/plain"}}),
        ("JSON with charset", {"content": b'{"patientId": "191212121212"}',
                               "headers": clinician() | {
                                   "Content-Type": "application/json; charset=utf-8"}}),
    ]


# Parametrised by case name only: the tokens are signed when the test runs, not when pytest
# collects it (a collected token can expire before a long suite reaches this test).
@pytest.mark.parametrize("case", [c for c, _ in _requests()])
async def test_the_lean_route_answers_as_fastapis_own(case: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    request_args = dict(_requests())[case]
    lean_calls: list[Request] = []
    checked = lean_route.clinician_claims

    async def counted(request: Request) -> Any:
        lean_calls.append(request)
        return await checked(request)

    monkeypatch.setattr(lean_route, "clinician_claims", counted)
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://query.test") as client:
        lean = await client.post("/v1/lean", **request_args)
        standard = await client.post("/v1/standard", **request_args)
    assert (lean.status_code, lean.headers.get("www-authenticate"), lean.text) == (
        standard.status_code, standard.headers.get("www-authenticate"), standard.text)
    if case in ("ordinary", "wrong role"):
        assert lean_calls, "the ordinary JSON request takes the lean path"
    if case in ("no token", "bad token"):  # the platform's request guard, before any route
        assert (lean_calls, lean.status_code) == ([], 401)
    if case == "ordinary":
        assert lean.status_code == 200


def test_the_answer_parts_are_what_the_schema_models_dump() -> None:
    target = Target("SE2321000016-LA1", "notes", "SE2321000016-G1", "SE2321000016-S1")
    record = Record("d1", "SE2321000016-S1", "20250101120000", "notes", target.logical_address,
                    {"header": {"documentId": "d1"}, "body": {"text": "x"}})
    results = [
        TargetResult(target, Status.DATA_FROM_SOURCE, records=(record,), duration_ms=21.37),
        TargetResult(target, Status.NO_DATA_SYNCH_FAILED, "http_status", 503, duration_ms=3),
        TargetResult(target, Status.WITHHELD_BY_DECISION, "blocked"),
        TargetResult(target, Status.NOT_AUTHORISED_BY_ROUTING, "not_in_routing"),
    ]
    for result in results:
        hidden = result.cause == "blocked"  # nothing of where, nor of which category
        model = ProducerOut(
            logical_address=None if hidden else target.logical_address,
            data_controller=None if hidden else target.data_controller,
            category=None if hidden else target.category, status=result.status, cause=result.cause,
            http_status=result.http_status, record_count=len(result.records),
            duration_ms=result.duration_ms)
        assert producer_json(result) == model.model_dump(mode="json", by_alias=True)
        assert ProducerOut.model_validate(producer_json(result)) == model
    as_model = RecordOut(category="notes", logical_address=target.logical_address,
                         document_id="d1", source_system="SE2321000016-S1",
                         time="20250101120000", document=record.document)
    assert record_json(record) == as_model.model_dump(mode="json", by_alias=True)
