"""The organisation directory of the simulated nation, for the index's operator view.

In production this reference data comes from HSA's catalogue (care givers: name, kind, where)
and SCB's population statistics (inhabitants). Here the simulator, which defines the nation,
writes it as one JSON file that the index loads (``INDEX_DIRECTORY_FILE``).

Inhabitants: regions carry the approximate 2023 figures of ``data/regions.csv``. The simulator
has no per-municipality head counts (``data/municipalities.csv`` holds code and name only) and
spreads a region's residents evenly over its municipalities (see ``population.py``). A
municipality's figure is therefore *modelled* the same way: its region's inhabitants divided by
the number of municipalities in the region, rounded to hundreds. They are not SCB statistics
and the file says so (``inhabitants_basis``).

``npo directory --out FILE`` writes the file (the local stack's copy is
``services/index/directory.local.json``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from npo_simulator.organisations import UNITS, Kind, Nation, Organisation, nation
from npo_simulator.staff import STAFF

REGION_BASIS = "approximate 2023 figures of the simulated nation (simulator data/regions.csv)"
MUNICIPALITY_BASIS = (
    "modelled, not SCB statistics: the region's inhabitants divided evenly over its "
    "municipalities (as the simulator spreads residents), rounded to hundreds"
)


def modelled_inhabitants(country: Nation, municipality: Organisation) -> int:
    """A municipality's modelled inhabitants: an even share of its region's, rounded to hundreds."""
    region = country.region_of(municipality)
    share = region.inhabitants / len(country.municipalities_in(region.county))
    return round(share / 100) * 100


def _entry(country: Nation, org: Organisation) -> dict[str, Any]:
    entry: dict[str, Any] = {"hsa_id": org.care_giver, "name": org.name, "kind": org.kind.value,
                             "county": org.county, "municipality": None, "inhabitants": None}
    if org.kind is Kind.REGION:
        entry["inhabitants"] = org.inhabitants
    elif org.kind is Kind.MUNICIPALITY:
        entry["municipality"] = org.code
        entry["inhabitants"] = modelled_inhabitants(country, org)
    return entry


def _units(org: Organisation) -> list[dict[str, Any]]:
    return [{"hsa_id": org.care_unit(n), "name": org.care_unit_name(n), "care_giver": org.care_giver}
            for n in range(1, UNITS + 1)]


def directory(country: Nation | None = None) -> dict[str, Any]:
    """The directory document: every care giver of the nation (regions first), their care
    units, and the named staff."""
    country = country or nation()
    return {
        "source": "npo-simulator: the simulated nation (HSA catalogue and SCB figures in production)",
        "inhabitants_basis": {"region": REGION_BASIS, "municipality": MUNICIPALITY_BASIS},
        "organisations": [_entry(country, o) for o in country.organisations],
        "care_units": [unit for o in country.organisations for unit in _units(o)],
        "people": [asdict(person) for person in STAFF],
    }


_LISTS = ("organisations", "care_units", "people")


def directory_json(country: Nation | None = None) -> str:
    """The document as JSON text, one entry per line (diff-friendly)."""
    document = directory(country)
    lists = {name: document.pop(name) for name in _LISTS}
    head = json.dumps(document, ensure_ascii=False, indent=1)[:-2]
    parts = [",\n".join("  " + json.dumps(entry, ensure_ascii=False) for entry in entries)
             for entries in lists.values()]
    body = ",\n".join(f' "{name}": [\n{rows}\n ]' for name, rows in zip(lists, parts, strict=True))
    return f"{head},\n{body}\n}}\n"


def export(
    out: Annotated[Path, typer.Option(help="where to write the directory JSON")],
) -> None:
    """Write the simulated nation's directory (care givers, inhabitants, care units, staff) as JSON."""
    out.write_text(directory_json(), encoding="utf-8")
    typer.echo(f"wrote {out} ({len(nation().organisations)} care givers)")
