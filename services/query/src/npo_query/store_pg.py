"""The routing table in PostgreSQL, in the service's own schema: all of the service's SQL."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from .routing import Authorisation, Route, RoutingTable


class PostgresRoutingStore:
    """The routing table in the service's own schema (``query`` by default)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def put_routes(self, routes: Iterable[Route]) -> None:
        given = list(routes)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO routes (logical_address, endpoint, social_services) VALUES ($1, $2, $3)"
                " ON CONFLICT (logical_address) DO UPDATE SET endpoint = EXCLUDED.endpoint,"
                " social_services = EXCLUDED.social_services, updated_at = now()",
                [(r.logical_address, r.endpoint, r.social_services)
                 for r in given if r.category is None],
            )
            await conn.executemany(
                "INSERT INTO contract_routes (logical_address, category, protocol, endpoint)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (logical_address, category) DO UPDATE"
                " SET protocol = EXCLUDED.protocol, endpoint = EXCLUDED.endpoint, updated_at = now()",
                [(r.logical_address, r.category, r.protocol, r.endpoint)
                 for r in given if r.category is not None],
            )

    async def delete_route(self, logical_address: str) -> bool:
        """Every route of the producer (its json route and its contracts' routes)."""
        async with self._pool.acquire() as conn, conn.transaction():
            base: str = await conn.execute(
                "DELETE FROM routes WHERE logical_address = $1", logical_address)
            contracts: str = await conn.execute(
                "DELETE FROM contract_routes WHERE logical_address = $1", logical_address)
        return (base, contracts) != ("DELETE 0", "DELETE 0")

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
            contracts: list[Any] = await conn.fetch(
                "SELECT logical_address, category, protocol, endpoint FROM contract_routes")
            auths: list[Any] = await conn.fetch(
                "SELECT consumer_system, logical_address, category FROM authorisations"
            )
        return RoutingTable.of(
            [*(Route(r["logical_address"], r["endpoint"], r["social_services"]) for r in routes),
             *(Route(r["logical_address"], r["endpoint"], category=r["category"],
                     protocol=r["protocol"]) for r in contracts)],
            (Authorisation(a["consumer_system"], a["logical_address"], a["category"]) for a in auths),
        )
