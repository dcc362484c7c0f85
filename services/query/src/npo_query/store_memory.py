"""The routing table in memory: the store's contract without a database (unit tests, the
benchmark)."""

from __future__ import annotations

from collections.abc import Iterable

from .routing import Authorisation, Route, RoutingTable


class InMemoryRoutingStore:
    """For unit tests and the benchmark: same contract, no database."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str | None], Route] = {}  # (address, rivta category)
        self._authorisations: set[Authorisation] = set()

    async def put_routes(self, routes: Iterable[Route]) -> None:
        self._routes.update({(r.logical_address, r.category): r for r in routes})

    async def delete_route(self, logical_address: str) -> bool:
        gone = [key for key in self._routes if key[0] == logical_address]
        for key in gone:
            del self._routes[key]
        return bool(gone)

    async def put_authorisations(self, authorisations: Iterable[Authorisation]) -> None:
        self._authorisations.update(authorisations)

    async def delete_authorisation(self, authorisation: Authorisation) -> bool:
        found = authorisation in self._authorisations
        self._authorisations.discard(authorisation)
        return found

    async def table(self) -> RoutingTable:
        return RoutingTable.of(self._routes.values(), self._authorisations)
