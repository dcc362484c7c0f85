"""Managing the routing table over HTTP (admin role), and the snapshot queries read from.

Queries never wait on the database: they read a snapshot refreshed every ``refresh_s`` and at
once after a change made through this replica's admin API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from npo_platform.identity import AdminClaims
from npo_platform.problems import Problem
from npo_platform.schemas import RequestModel

from .routing import (
    ALL_CATEGORIES,
    Authorisation,
    InvalidRouting,
    Route,
    RoutingTable,
    check_authorisation,
    check_route,
    parse_file,
)
from .store import RoutingStore

router = APIRouter(prefix="/v1/routing", tags=["routing"])
T = TypeVar("T")


class RoutingView:
    """The routing snapshot, reloaded from the store when older than ``refresh_s``."""

    def __init__(self, store: RoutingStore, refresh_s: float = 5.0) -> None:
        self.store = store
        self._refresh = refresh_s
        self._table: RoutingTable | None = None
        self._loaded = 0.0

    async def table(self) -> RoutingTable:
        if self._table is None or time.monotonic() - self._loaded > self._refresh:
            self._table = await self.store.table()
            self._loaded = time.monotonic()
        return self._table

    def changed(self) -> None:
        self._table = None

    async def load_file(self, path: Path) -> tuple[int, int]:
        routes, authorisations = parse_file(path)
        await self.store.put_routes(routes)
        await self.store.put_authorisations(authorisations)
        self.changed()
        return len(routes), len(authorisations)


class _Body(RequestModel):
    """Routing admin bodies (the platform's RequestModel)."""


class RouteIn(_Body):
    logical_address: str = Field(min_length=1, max_length=64)
    endpoint: str = Field(min_length=1, max_length=500)
    # Social-services (SoL) information only: the overview never calls this address.
    social_services: bool = False


class AuthorisationIn(_Body):
    consumer_system: str = Field(min_length=1, max_length=64)
    logical_address: str = Field(min_length=1, max_length=64)
    category: str = Field(ALL_CATEGORIES, max_length=64)


class RoutingOut(BaseModel):
    routes: list[RouteIn]
    authorisations: list[AuthorisationIn]


def _view(request: Request) -> RoutingView:
    view: RoutingView = request.app.state.routing
    return view


def _checked(check: Callable[[T], T], value: T) -> T:
    try:
        return check(value)
    except InvalidRouting as error:
        raise Problem(422, error.code, error.detail) from None


@router.get("")
async def read_table(request: Request, _: AdminClaims) -> RoutingOut:
    table = await _view(request).store.table()
    return RoutingOut(
        routes=[RouteIn(logical_address=a, endpoint=e, social_services=a in table.social_services)
                for a, e in sorted(table.routes.items())],
        authorisations=[AuthorisationIn(consumer_system=c, logical_address=a, category=k)
                        for c, a, k in sorted(table.authorised)],
    )


@router.put("/routes", status_code=204)
async def put_routes(body: list[RouteIn], request: Request, _: AdminClaims) -> None:
    routes = [_checked(check_route, Route(r.logical_address, r.endpoint, r.social_services))
              for r in body]
    view = _view(request)
    await view.store.put_routes(routes)
    view.changed()


@router.delete("/routes/{logical_address}", status_code=204)
async def delete_route(logical_address: Annotated[str, PathParam(max_length=64, pattern=r"^[^\x00]+$")],
                       request: Request, _: AdminClaims) -> None:
    view = _view(request)
    if not await view.store.delete_route(logical_address):
        raise Problem(404, "routing.not_found", "No route for that logical address.")
    view.changed()


@router.put("/authorisations", status_code=204)
async def put_authorisations(body: list[AuthorisationIn], request: Request,
                             _: AdminClaims) -> None:
    found = [_checked(check_authorisation, Authorisation(a.consumer_system, a.logical_address,
                                                         a.category)) for a in body]
    view = _view(request)
    await view.store.put_authorisations(found)
    view.changed()


@router.post("/authorisations/delete", status_code=204)
async def delete_authorisation(body: AuthorisationIn, request: Request, _: AdminClaims) -> None:
    view = _view(request)
    wanted = Authorisation(body.consumer_system, body.logical_address, body.category)
    if not await view.store.delete_authorisation(wanted):
        raise Problem(404, "routing.not_found", "No such authorisation.")
    view.changed()
