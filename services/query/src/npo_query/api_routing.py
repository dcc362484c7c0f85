"""HTTP: the routing table's administration (admin role): parse, call the routing use case
(service.RoutingService), render. Invalid entries are 422 problems with the routing code.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from npo_platform.identity import AdminClaims
from npo_platform.problems import Problem
from npo_platform.schemas import RequestModel

from .routing import ALL_CATEGORIES, Authorisation, InvalidRouting, Route
from .service import RoutingService

router = APIRouter(prefix="/v1/routing", tags=["routing"])
TABLE_MAX_BODY = 4 * 1024 * 1024  # a whole nation's routes or authorisations in one request
TABLE_PATHS = ("/v1/routing/routes", "/v1/routing/authorisations")
T = TypeVar("T")


class _Body(RequestModel):
    """Routing admin bodies (the platform's RequestModel)."""


class RouteIn(_Body):
    logical_address: str = Field(min_length=1, max_length=64)
    endpoint: str = Field(min_length=1, max_length=500)
    # Social-services (SoL) information only: the overview never calls this address.
    social_services: bool = False
    category: str | None = Field(None, max_length=64, description="rivta: the contract's category")
    protocol: Literal["json", "rivta"] = "json"


class AuthorisationIn(_Body):
    consumer_system: str = Field(min_length=1, max_length=64)
    logical_address: str = Field(min_length=1, max_length=64)
    category: str = Field(ALL_CATEGORIES, max_length=64)


class RoutingOut(BaseModel):
    routes: list[RouteIn]
    authorisations: list[AuthorisationIn]


def _routing(request: Request) -> RoutingService:
    routing: RoutingService = request.app.state.routing
    return routing


async def _checked(change: Awaitable[T]) -> T:
    try:
        return await change
    except InvalidRouting as error:
        raise Problem(422, error.code, error.detail) from None


@router.get("")
async def read_table(request: Request, _: AdminClaims) -> RoutingOut:
    table = await _routing(request).current()
    return RoutingOut(
        routes=[RouteIn(logical_address=r.logical_address, endpoint=r.endpoint,
                        social_services=r.social_services, category=r.category,
                        protocol="rivta" if r.protocol == "rivta" else "json")
                for r in table.all_routes()],
        authorisations=[AuthorisationIn(consumer_system=c, logical_address=a, category=k)
                        for c, a, k in sorted(table.authorised)],
    )


@router.put("/routes", status_code=204)
async def put_routes(body: list[RouteIn], request: Request, _: AdminClaims) -> None:
    routes = [Route(r.logical_address, r.endpoint, r.social_services, r.category, r.protocol)
              for r in body]
    await _checked(_routing(request).put_routes(routes))


@router.delete("/routes/{logical_address}", status_code=204)
async def delete_route(logical_address: Annotated[str, PathParam(max_length=64, pattern=r"^[^\x00]+$")],
                       request: Request, _: AdminClaims) -> None:
    if not await _routing(request).delete_route(logical_address):
        raise Problem(404, "routing.not_found", "No route for that logical address.")


@router.put("/authorisations", status_code=204)
async def put_authorisations(body: list[AuthorisationIn], request: Request,
                             _: AdminClaims) -> None:
    found = [Authorisation(a.consumer_system, a.logical_address, a.category) for a in body]
    await _checked(_routing(request).put_authorisations(found))


@router.post("/authorisations/delete", status_code=204)
async def delete_authorisation(body: AuthorisationIn, request: Request, _: AdminClaims) -> None:
    wanted = Authorisation(body.consumer_system, body.logical_address, body.category)
    if not await _routing(request).delete_authorisation(wanted):
        raise Problem(404, "routing.not_found", "No such authorisation.")
