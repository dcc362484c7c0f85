"""Where the routing table is kept: a Protocol, the PostgreSQL store and an in-memory one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import asyncpg

from .routing import Authorisation, Route, RoutingTable


class RoutingStore(Protocol):
    async def put_routes(self, routes: Iterable[Route]) -> None: ...
    async def delete_route(self, logical_address: str) -> bool: ...
    async def put_authorisations(self, authorisations: Iterable[Authorisation]) -> None: ...
    async def delete_authorisation(self, authorisation: Authorisation) -> bool: ...
    async def table(self) -> RoutingTable: ...


class InMemoryRoutingStore:
    """For unit tests and the benchmark: same contract, no database."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._authorisations: set[Authorisation] = set()

    async def put_routes(self, routes: Iterable[Route]) -> None:
        self._routes.update({r.logical_address: r for r in routes})

    async def delete_route(self, logical_address: str) -> bool:
        return self._routes.pop(logical_address, None) is not None

    async def put_authorisations(self, authorisations: Iterable[Authorisation]) -> None:
        self._authorisations.update(authorisations)

    async def delete_authorisation(self, authorisation: Authorisation) -> bool:
        found = authorisation in self._authorisations
        self._authorisations.discard(authorisation)
        return found

    async def table(self) -> RoutingTable:
        return RoutingTable.of(self._routes.values(), self._authorisations)


class PostgresRoutingStore:
    """The routing table in the service's own schema (``query`` by default)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def put_routes(self, routes: Iterable[Route]) -> None:
        rows = [(r.logical_address, r.endpoint, r.social_services) for r in routes]
        await self._pool.executemany(
            "INSERT INTO routes (logical_address, endpoint, social_services) VALUES ($1, $2, $3)"
            " ON CONFLICT (logical_address) DO UPDATE SET endpoint = EXCLUDED.endpoint,"
            " social_services = EXCLUDED.social_services, updated_at = now()",
            rows,
        )

    async def delete_route(self, logical_address: str) -> bool:
        status: str = await self._pool.execute(
            "DELETE FROM routes WHERE logical_address = $1", logical_address
        )
        return status != "DELETE 0"

    async def put_authorisations(self, authorisations: Iterable[Authorisation]) -> None:
        rows = [(a.consumer_system, a.logical_address, a.category) for a in authorisations]
        await self._pool.executemany(
            "INSERT INTO authorisations (consumer_system, logical_address, category)"
            " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            rows,
        )

    async def delete_authorisation(self, authorisation: Authorisation) -> bool:
        status: str = await self._pool.execute(
            "DELETE FROM authorisations WHERE consumer_system = $1 AND logical_address = $2"
            " AND category = $3",
            authorisation.consumer_system, authorisation.logical_address, authorisation.category,
        )
        return status != "DELETE 0"

    async def table(self) -> RoutingTable:
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            routes: list[Any] = await conn.fetch(
                "SELECT logical_address, endpoint, social_services FROM routes")
            auths: list[Any] = await conn.fetch(
                "SELECT consumer_system, logical_address, category FROM authorisations"
            )
        return RoutingTable.of(
            (Route(r["logical_address"], r["endpoint"], r["social_services"]) for r in routes),
            (Authorisation(a["consumer_system"], a["logical_address"], a["category"]) for a in auths),
        )
