"""Many simulated producers in one HTTP process, virtual-hosted by logical address.

``POST /producers/{logical_address}/{category}`` answers one category's records of one patient
(the patient id travels in the body, never in the URL), optionally within a time window and for
one care unit, paged with an opaque continuation token. Behaviour per producer (latency, errors,
timeouts, outages) is set through ``PUT /admin/behaviour/{logical_address}``.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.types import Scope

from npo_platform.categories import UnknownCategory, by_key
from npo_platform.identity import DEFAULT_AUDIENCE, AdminClaims, Audience, SystemClaims
from npo_platform.problems import Problem
from npo_platform.service import create_service_app
from npo_rivta.refusals import guard_soap_paths
from npo_simulator import riv
from npo_simulator.behaviour import Behaviour, BehaviourBook, apply
from npo_simulator.config import SimulatorSettings
from npo_simulator.content import document
from npo_simulator.store import RecordSource

MAX_PAGE = 500


class CategoryQuery(BaseModel):
    """A consumer's request, in the spirit of RIVTA's Get... requests."""

    patient_id: str = Field(alias="patientId", min_length=12, max_length=12)
    from_time: datetime | None = Field(None, alias="from")
    to_time: datetime | None = Field(None, alias="to")
    care_unit: str | None = Field(None, alias="careUnitHSAId")
    continuation_token: str | None = Field(None, alias="continuationToken")
    page_size: int = Field(100, alias="pageSize", ge=1, le=MAX_PAGE)


def _offset(token: str | None) -> int:
    if token is None:
        return 0
    try:
        kind, value = base64.urlsafe_b64decode(token.encode()).decode().split(":", 1)
        if kind != "offset" or int(value) < 0:
            raise ValueError(kind)
        return int(value)
    except ValueError:
        raise Problem(400, "continuation.invalid", "The continuation token is not valid.") from None


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _source(request: Request) -> RecordSource:
    source: RecordSource = request.app.state.records
    return source


def _book(request: Request) -> BehaviourBook:
    book: BehaviourBook = request.app.state.behaviour
    return book


Source = Annotated[RecordSource, Depends(_source)]
Book = Annotated[BehaviourBook, Depends(_book)]
router = APIRouter()


@router.post("/producers/{logical_address}/{category}", tags=["producers"])
async def get_records(
    logical_address: str, category: str, query: CategoryQuery, source: Source, book: Book,
    _claims: SystemClaims,
) -> JSONResponse:
    """One page of a patient's records of one category at one producer.

    Only the aggregating system's token for this producer is answered: the ``system`` role and
    the audience ``<public URL>/producers/<logical address>`` (``producer_audience``)."""
    org = source.nation.by_logical_address(logical_address)
    try:
        number = by_key(category).number
    except UnknownCategory:
        raise Problem(404, "category.unknown", "No such information category.") from None
    if org is None or not org.serves(logical_address, number):
        raise Problem(404, "producer.not_serving", "This address does not serve that category.")
    outcome = book.draw(logical_address)
    await apply(outcome)
    if outcome.status is not None:
        raise Problem(outcome.status, "producer.simulated_error", "Simulated producer failure.")
    records = source.records(query.patient_id, org, number, query.from_time, query.to_time,
                             query.care_unit, address=logical_address)
    start = _offset(query.continuation_token)
    page = records[start : start + query.page_size]
    more = start + len(page) < len(records)
    body: dict[str, Any] = {
        "contract": by_key(category).contract,
        "result": {"resultCode": "OK"},
        "records": [document(r) for r in page],
        "continuationToken": _token(start + len(page)) if more else None,
    }
    return JSONResponse(body)


@router.put("/admin/behaviour/{logical_address}", tags=["admin"])
async def set_behaviour(
    logical_address: str, behaviour: Behaviour, book: Book, _claims: AdminClaims
) -> Behaviour:
    """Set how one producer answers from now on."""
    book.set(logical_address, behaviour)
    return behaviour


@router.delete("/admin/behaviour", tags=["admin"])
async def reset_behaviour(book: Book, _claims: AdminClaims) -> dict[str, str]:
    """Every producer back to the default behaviour."""
    book.reset()
    return {"status": "reset"}


def producer_audience(base_url: str) -> Audience:
    """A producer's token names its endpoint as the route table gives it to the aggregating
    system: ``<base>/producers/<logical address>`` (JSON), a contract's responder URL
    ``<base>/riv/…`` (RIV-TA); the admin routes take platform tokens."""
    def audience(scope: Scope) -> str:
        path = scope.get("path", "")
        parts = path.split("/", 3)
        if len(parts) == 4 and parts[1] == "producers":
            return f"{base_url}/producers/{parts[2]}"
        if path in riv.PATHS:
            return f"{base_url}{path}"
        return DEFAULT_AUDIENCE

    return audience


def create_app(settings: SimulatorSettings | None = None, source: RecordSource | None = None,
               **kwargs: Any) -> FastAPI:
    """The producers' HTTP application; records come from the configured population."""
    config = settings or SimulatorSettings()
    app = create_service_app(config, title="NPO simulated producers", distribution="npo-simulator",
                             token_audience=producer_audience(config.base_url), **kwargs)
    app.state.records = (source or RecordSource(config.population, config.seed)).load()
    app.state.behaviour = BehaviourBook(config.seed)
    app.include_router(router)
    app.include_router(riv.router)
    guard_soap_paths(app, riv.PATHS)
    return app
