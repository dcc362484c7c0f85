"""The organisation directory the simulator exports for the index's operator view."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from npo_simulator.directory import directory, directory_json, export, modelled_inhabitants
from npo_simulator.organisations import Kind, nation

LOCAL_COPY = Path(__file__).resolve().parents[2] / "services" / "index" / "directory.local.json"


def test_every_care_giver_once_with_kind_and_county() -> None:
    entries = directory()["organisations"]
    assert len(entries) == len(nation().organisations) == len({e["hsa_id"] for e in entries})
    by_id = {e["hsa_id"]: e for e in entries}
    motala = nation().by_name("Motala kommun")
    assert by_id[motala.care_giver] == {
        "hsa_id": motala.care_giver, "name": "Motala kommun", "kind": "municipality",
        "county": "05", "municipality": motala.code, "inhabitants": modelled_inhabitants(nation(), motala),
    }
    ostergotland = nation().by_name("Region Östergötland")
    assert by_id[ostergotland.care_giver]["inhabitants"] == ostergotland.inhabitants
    assert all(e["inhabitants"] is None for e in entries if e["kind"] == "private")


def test_municipal_inhabitants_are_an_even_share_of_the_region_labelled_as_modelled() -> None:
    document = directory()
    assert "not SCB" in document["inhabitants_basis"]["municipality"]
    for region in nation().of_kind(Kind.REGION):
        municipalities = nation().municipalities_in(region.county)
        shares = {modelled_inhabitants(nation(), m) for m in municipalities}
        assert len(shares) == 1
        assert abs(shares.pop() * len(municipalities) - region.inhabitants) <= 50 * len(municipalities)


def test_the_local_stacks_copy_is_up_to_date() -> None:
    assert LOCAL_COPY.read_text(encoding="utf-8") == directory_json(), (
        "regenerate it: npo directory --out services/index/directory.local.json")
    assert json.loads(LOCAL_COPY.read_text(encoding="utf-8")) == directory()


def test_the_command_writes_the_file(tmp_path: Path) -> None:
    import typer

    app = typer.Typer()
    app.command()(export)
    out = tmp_path / "directory.json"
    result = CliRunner().invoke(app, ["--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8")) == directory()
