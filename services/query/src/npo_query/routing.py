"""The routing table (Inera's TAK), no I/O: who may read what where, and where each producer is.

Two relations, as in TAK: a *route* gives a producer's (logical address) endpoint, and an
*authorisation* lets one consumer system read one category at one producer. A target is
callable when both exist. ``*`` as a category authorises every category at that producer. A
route may declare its address social-services only (SoL information, design.md §5.5): the
overview never calls it, whatever the authorisations.

A route names the protocol its endpoint speaks. A producer's ``json`` route (no category) is its
base URL for this project's JSON contract; a ``rivta`` route is for one category with a national
read contract and is that contract's responder URL (``…/<Name>Responder/<major>``, the logical
address then travels in the SOAP header). For that category it takes the place of the JSON one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from npo_platform.categories import by_key
from npo_rivta.read_contracts import READ_CONTRACTS

ALL_CATEGORIES = "*"
IPAddress = IPv4Address | IPv6Address


class InvalidRouting(ValueError):
    """A routing entry that cannot be stored; ``code`` is stable."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


JSON, RIVTA = "json", "rivta"


@dataclass(frozen=True, slots=True)
class Route:
    logical_address: str
    endpoint: str  # json: base URL, the category key appended; rivta: the responder's URL
    social_services: bool = False  # the address holds social-services information only
    category: str | None = None  # rivta: the category (its read contract) this route is for
    protocol: str = JSON


@dataclass(frozen=True, slots=True)
class Authorisation:
    consumer_system: str
    logical_address: str
    category: str  # a category key or ALL_CATEGORIES


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    """Where a producer may be: never a link-local, multicast, reserved or unspecified address
    (a cloud's metadata service is link-local); this machine only for the local stack."""

    allow_loopback: bool = False

    def forbids(self, address: IPAddress) -> bool:
        address = getattr(address, "ipv4_mapped", None) or address
        if address.is_loopback:
            return not self.allow_loopback
        return (address.is_link_local or address.is_multicast or address.is_unspecified
                or address.is_reserved)


STRICT = EndpointPolicy()  # production's: nothing on this machine
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
# 0x7f000001, 2130706433, 0177.1, 127.1: numbers that name an address without looking like it
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$", re.IGNORECASE)


def check_route(route: Route, policy: EndpointPolicy = STRICT) -> Route:
    if not route.logical_address.strip() or route.logical_address != route.logical_address.strip():
        raise InvalidRouting("routing.address_invalid", "A logical address is required, untrimmed.")
    endpoint = check_endpoint(route.endpoint, policy)
    if route.protocol == JSON and route.category is None:
        return Route(route.logical_address, endpoint, route.social_services)
    contract = READ_CONTRACTS.get(route.category or "")
    if route.protocol != RIVTA or contract is None:
        raise InvalidRouting("routing.protocol_invalid", "A route is json (no category) or rivta "
                             "for a category with a national read contract.")
    if not endpoint.endswith(contract.interaction.path):
        raise InvalidRouting("routing.endpoint_invalid",
                             f"A rivta route's endpoint ends with {contract.interaction.path}.")
    return Route(route.logical_address, endpoint, route.social_services, route.category, RIVTA)


def check_endpoint(endpoint: str, policy: EndpointPolicy) -> str:
    """The endpoint as stored, when it is an http(s) URL the query service may send a token to.

    The routing table decides where the aggregating system's requests (and their tokens) go, so
    an entry is an allow-listed URL: http or https, a host and an optional port, a path; no
    user information, query, fragment, whitespace or control characters, and no host written
    as a number other than a canonical address."""
    invalid = InvalidRouting("routing.endpoint_invalid", "An endpoint is an http(s) URL with a "
                             "host and a path only: no user information, query or fragment.")
    try:
        url = urlsplit(endpoint)
        url.port  # noqa: B018 - a port that is not a number raises ValueError
    except ValueError:
        raise invalid from None
    host = url.hostname
    if (url.scheme not in ("http", "https") or not host or _CONTROL.search(endpoint)
            or "@" in url.netloc or "?" in endpoint or "#" in endpoint):
        raise invalid
    if _forbidden_host(host, policy):
        raise InvalidRouting("routing.endpoint_forbidden", "An endpoint may not be on a link-local, "
                             "loopback (unless configured), multicast or reserved address.")
    return endpoint.rstrip("/")


def _forbidden_host(host: str, policy: EndpointPolicy) -> bool:
    try:
        address = ip_address(host)
    except ValueError:
        if _NUMERIC_HOST.match(host):
            return True  # a number that is not a canonical address hides where it points
        loopback = host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost")
        return loopback and not policy.allow_loopback
    return policy.forbids(address)


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

    routes: dict[str, str]  # logical address -> its json endpoint
    authorised: frozenset[tuple[str, str, str]]  # (consumer, address, category or *)
    social_services: frozenset[str] = frozenset()  # addresses of social-services information
    contracts: dict[tuple[str, str], str] = field(default_factory=dict)  # rivta: (address, category)

    @classmethod
    def of(cls, routes: Iterable[Route], authorisations: Iterable[Authorisation]) -> RoutingTable:
        listed = list(routes)
        return cls(
            {r.logical_address: r.endpoint for r in listed if r.category is None},
            frozenset((a.consumer_system, a.logical_address, a.category) for a in authorisations),
            frozenset(r.logical_address for r in listed if r.social_services),
            {(r.logical_address, r.category): r.endpoint for r in listed if r.category is not None},
        )

    def all_routes(self) -> list[Route]:
        json = (Route(a, e, a in self.social_services) for a, e in self.routes.items())
        rivta = (Route(a, e, a in self.social_services, c, RIVTA)
                 for (a, c), e in self.contracts.items())
        return sorted([*json, *rivta], key=lambda r: (r.logical_address, r.category or ""))

    def endpoint(self, consumer: str, logical_address: str, category: str) -> str | None:
        """The producer's endpoint when ``consumer`` may read ``category`` there, else None: the
        category's rivta route where there is one, else the producer's json route."""
        endpoint = self.contracts.get((logical_address, category)) or self.routes.get(logical_address)
        if endpoint is None:
            return None
        for wanted in (category, ALL_CATEGORIES):
            if (consumer, logical_address, wanted) in self.authorised:
                return endpoint
        return None


EMPTY = RoutingTable({}, frozenset())


def parse_file(path: Path, policy: EndpointPolicy) -> tuple[list[Route], list[Authorisation]]:
    """Read a routing file: ``{"routes": [{logical_address, endpoint, social_services?,
    category?, protocol?}], "authorisations": [{consumer_system, logical_address, categories:
    [...] or "*"}]}``."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    routes = [check_route(Route(r["logical_address"], r["endpoint"], r.get("social_services") is True,
                                r.get("category"), r.get("protocol", JSON)), policy)
              for r in data.get("routes", [])]
    authorisations = [
        check_authorisation(Authorisation(a["consumer_system"], a["logical_address"], category))
        for a in data.get("authorisations", [])
        for category in _categories(a.get("categories", ALL_CATEGORIES))
    ]
    return routes, authorisations


def _categories(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
