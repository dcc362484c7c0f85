"""The routing table (Inera's TAK), no I/O: who may read what where, and where each producer is.

Two relations, as in TAK: a *route* gives a producer's (logical address) endpoint, and an
*authorisation* lets one consumer system read one category at one producer. A target is
callable when both exist. ``*`` as a category authorises every category at that producer. A
route may declare its address social-services only (SoL information, design.md §5.5): the
overview never calls it, whatever the authorisations.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from npo_platform.categories import by_key

ALL_CATEGORIES = "*"


class InvalidRouting(ValueError):
    """A routing entry that cannot be stored; ``code`` is stable."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Route:
    logical_address: str
    endpoint: str  # base URL; the category key is appended as the last path segment
    social_services: bool = False  # the address holds social-services information only


@dataclass(frozen=True, slots=True)
class Authorisation:
    consumer_system: str
    logical_address: str
    category: str  # a category key or ALL_CATEGORIES


def check_route(route: Route) -> Route:
    if not route.logical_address.strip() or route.logical_address != route.logical_address.strip():
        raise InvalidRouting("routing.address_invalid", "A logical address is required, untrimmed.")
    if not route.endpoint.startswith(("http://", "https://")):
        raise InvalidRouting("routing.endpoint_invalid", "An endpoint is an http(s) URL.")
    return Route(route.logical_address, route.endpoint.rstrip("/"), route.social_services)


def check_authorisation(authorisation: Authorisation) -> Authorisation:
    if not authorisation.consumer_system or not authorisation.logical_address:
        raise InvalidRouting("routing.authorisation_invalid", "Consumer and address are required.")
    if authorisation.category != ALL_CATEGORIES:
        try:
            by_key(authorisation.category)
        except LookupError:
            raise InvalidRouting("category.unknown", "No such information category.") from None
    return authorisation


@dataclass(frozen=True)
class RoutingTable:
    """An immutable snapshot the aggregator consults on every query."""

    routes: dict[str, str]  # logical address -> endpoint
    authorised: frozenset[tuple[str, str, str]]  # (consumer, address, category or *)
    social_services: frozenset[str] = frozenset()  # addresses of social-services information

    @classmethod
    def of(cls, routes: Iterable[Route], authorisations: Iterable[Authorisation]) -> RoutingTable:
        listed = list(routes)
        return cls(
            {r.logical_address: r.endpoint for r in listed},
            frozenset((a.consumer_system, a.logical_address, a.category) for a in authorisations),
            frozenset(r.logical_address for r in listed if r.social_services),
        )

    def endpoint(self, consumer: str, logical_address: str, category: str) -> str | None:
        """The producer's endpoint when ``consumer`` may read ``category`` there, else None."""
        endpoint = self.routes.get(logical_address)
        if endpoint is None:
            return None
        for wanted in (category, ALL_CATEGORIES):
            if (consumer, logical_address, wanted) in self.authorised:
                return endpoint
        return None


EMPTY = RoutingTable({}, frozenset())


def parse_file(path: Path) -> tuple[list[Route], list[Authorisation]]:
    """Read a routing file: ``{"routes": [{logical_address, endpoint, social_services?}],
    "authorisations": [{consumer_system, logical_address, categories: [...] or "*"}]}``."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    routes = [check_route(Route(r["logical_address"], r["endpoint"], r.get("social_services") is True))
              for r in data.get("routes", [])]
    authorisations = [
        check_authorisation(Authorisation(a["consumer_system"], a["logical_address"], category))
        for a in data.get("authorisations", [])
        for category in _categories(a.get("categories", ALL_CATEGORIES))
    ]
    return routes, authorisations


def _categories(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
