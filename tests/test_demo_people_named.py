"""The people the local stack signs tokens for are the directory's staff, by the same names, so
every page names them (the directory the simulator writes, npo_simulator.staff)."""

from __future__ import annotations

from npo_deploy.tokens import demo_people
from npo_simulator.directory import directory


def test_every_demo_person_is_in_the_directory_by_the_same_name() -> None:
    document = directory()
    people = {p["hsa_id"]: p for p in document["people"]}
    units = {u["hsa_id"]: u for u in document["care_units"]}
    for role, who in demo_people().items():
        if role.value == "patient":
            continue  # patients are not staff: the extract names care givers and units
        assert people[who.sub]["name"] == who.name, role
        if who.care_unit:
            assert people[who.sub]["care_unit"] == who.care_unit
            assert units[who.care_unit]["care_giver"] == who.care_giver
