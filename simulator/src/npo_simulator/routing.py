"""The routing table (TAK) of the simulated producers, for the query service: ``npo routing``.

Every producer that publishes is routed to its JSON contract and authorised for every category
for the consumer system; the municipalities' social-services addresses are declared as such
(the overview never calls them). The producers of the kinds named (default: every region) also speak
RIV-TA: for each category they publish that has a national read contract, a ``rivta`` route to
the simulator's responder URL takes the place of the JSON one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from npo_platform.categories import by_key
from npo_rivta.read_contracts import READ_CONTRACTS
from npo_simulator.organisations import Kind, Nation, nation

CONSUMER_SYSTEM = "SE5565594230-NPOVIEW"  # the query service's own consumer system (its default)
LOCAL_PRODUCERS = "http://127.0.0.1:8110"  # the simulator on the local stack
RIVTA_BY_DEFAULT = (Kind.REGION,)


def routing_table(country: Nation, producers_url: str, *, consumer_system: str = CONSUMER_SYSTEM,
                  rivta_kinds: Iterable[str] = RIVTA_BY_DEFAULT) -> dict[str, Any]:
    by_address = {o.logical_address: o for o in country.organisations if o.publishes}
    social = set(country.social_services_addresses)  # declared so: never called
    speaking = set(rivta_kinds)
    routes: list[dict[str, Any]] = []
    for address in sorted(by_address.keys() | social):
        route: dict[str, Any] = {"logical_address": address,
                                 "endpoint": f"{producers_url}/producers/{address}"}
        routes.append({**route, "social_services": True} if address in social else route)
        org = by_address.get(address)
        if org is None or org.kind not in speaking:
            continue
        routes += [{"logical_address": address, "category": contract.category,
                    "protocol": "rivta", "endpoint": f"{producers_url}{contract.interaction.path}"}
                   for contract in READ_CONTRACTS.values()
                   if by_key(contract.category).number in org.publishes]
    return {"routes": routes,
            "authorisations": [{"consumer_system": consumer_system, "logical_address": a,
                                "categories": "*"} for a in sorted(by_address.keys() | social)]}


def export(
    out: Annotated[Path, typer.Option(help="where to write the routing table JSON")],
    producers_url: Annotated[str, typer.Option(help="the simulator's base URL")] = LOCAL_PRODUCERS,
    rivta: Annotated[list[str] | None, typer.Option(
        help="kinds of producer that speak RIV-TA (region, municipality, private)")] = None,
) -> None:
    """Write the routing table of the simulated producers for the query service."""
    kinds = RIVTA_BY_DEFAULT if rivta is None else tuple(Kind(k) for k in rivta)
    table = routing_table(nation(), producers_url, rivta_kinds=kinds)
    out.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    typer.echo(f"wrote {out} ({len(table['routes'])} routes)")
