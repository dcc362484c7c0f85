"""The organisation directory endpoint of the operator view: roles, content, bad files."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from npo_index.config import IndexSettings
from npo_index.directory import DirectoryError, load_directory
from npo_index.main import create_app
from npo_index.store_memory import InMemoryIndexStore
from npo_platform.identity import Principal, Role, TokenVerifier, ensure_local_keypair, issue_token

LOCAL_COPY = Path(__file__).resolve().parents[1] / "directory.local.json"
DOCUMENT = {
    "source": "test",
    "inhabitants_basis": {"region": "approximate", "municipality": "modelled"},
    "organisations": [
        {"hsa_id": "SE2321000503-VG", "name": "Region Östergötland", "kind": "region",
         "county": "05", "municipality": None, "inhabitants": 471000},
        {"hsa_id": "SE2120005830-VG", "name": "Motala kommun", "kind": "municipality",
         "county": "05", "municipality": "0583", "inhabitants": 36200},
    ],
    "care_units": [{"hsa_id": "SE2321000503-VE001", "name": "Vårdcentralen Östergötland",
                    "care_giver": "SE2321000503-VG"}],
    "people": [{"hsa_id": "SE2321000503-L001", "name": "Dr Lisa Lind", "title": "Läkare",
                "care_unit": "SE2321000503-VE001"}],
}


async def _client(tmp_path: Path, directory: Path | None) -> tuple[httpx.AsyncClient, bytes]:
    private, public = ensure_local_keypair(tmp_path / "keys")
    settings = IndexSettings(directory_file=directory, state_dir=tmp_path)
    app = create_app(settings, store=InMemoryIndexStore(),  # no publisher: nothing is ingested
                     token_verifier=TokenVerifier(public.read_bytes()))
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://npo-index.test"), private.read_bytes()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, bytes]]:
    path = tmp_path / "directory.json"
    path.write_text(json.dumps(DOCUMENT), encoding="utf-8")
    client, private = await _client(tmp_path, path)
    async with client:
        yield client, private


# What a token of each role must say besides its role.
_CLAIMS: dict[Role, dict[str, str]] = {
    Role.CLINICIAN: {"care_unit": "SE2321000503-VE001", "care_giver": "SE2321000503-VG",
                     "assignment": "A1", "purpose": "care"},
    Role.PATIENT: {"patient": "191212121212"},
    Role.PRODUCER: {"care_giver": "SE2321000016-0001"},  # a producer names its care giver
}


def _as(private: bytes, *roles: Role) -> dict[str, str]:
    extra = {key: value for role in roles for key, value in _CLAIMS.get(role, {}).items()}
    principal = Principal(sub="SE2321000016-OP09", name="Test", roles=frozenset(roles), **extra)
    return {"Authorization": f"Bearer {issue_token(private, principal, timedelta(minutes=5))}"}


async def _read(served: tuple[httpx.AsyncClient, bytes], path: str, role: Role) -> Any:
    client, private = served
    answer = await client.get(path, headers=_as(private, role))
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.ADMIN])
async def test_operators_and_admins_read_the_directory_and_categories(
    served: tuple[httpx.AsyncClient, bytes], role: Role
) -> None:
    body = await _read(served, "/directory", role)
    assert body["directory"] == DOCUMENT
    assert [c["number"] for c in body["categories"]] == list(range(1, 18))
    assert [c["available"] for c in body["categories"]] == [True] * 11 + [False] * 6


@pytest.mark.parametrize("role", [Role.PRODUCER, Role.COMPLIANCE_OFFICER, Role.SYSTEM])
async def test_other_roles_are_refused(served: tuple[httpx.AsyncClient, bytes], role: Role) -> None:
    client, private = served
    answer = await client.get("/directory", headers=_as(private, role))
    assert answer.status_code == 403
    assert answer.json()["code"] == "role.missing"
    assert (await client.get("/directory")).status_code == 401


async def test_without_a_directory_file_the_answer_says_so(tmp_path: Path) -> None:
    client, private = await _client(tmp_path, None)
    async with client:
        answer = await client.get("/directory", headers=_as(private, Role.OPERATOR))
    assert answer.status_code == 404
    assert answer.json()["code"] == "directory.not_configured"


def test_a_bad_or_missing_file_stops_the_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**DOCUMENT, "organisations": [{"hsa_id": "x"}]}), encoding="utf-8")
    with pytest.raises(DirectoryError, match="not a directory document"):
        load_directory(bad)
    with pytest.raises(DirectoryError, match="cannot read"):
        load_directory(tmp_path / "missing.json")


def test_the_local_stacks_directory_loads() -> None:
    found = load_directory(LOCAL_COPY)
    kinds = [o.kind for o in found.organisations]
    assert (kinds.count("region"), kinds.count("municipality")) == (21, 290)


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.COMPLIANCE_OFFICER, Role.OPERATOR, Role.ADMIN])
async def test_every_page_reads_the_names_staff_theirs_too(
    served: tuple[httpx.AsyncClient, bytes], role: Role
) -> None:
    names = await _read(served, "/directory/names", role)
    assert names["care_givers"]["SE2120005830-VG"] == "Motala kommun"
    assert names["care_units"]["SE2321000503-VE001"] == {
        "hsa_id": "SE2321000503-VE001", "name": "Vårdcentralen Östergötland", "care_giver": "SE2321000503-VG"}
    assert names["people"] == {"SE2321000503-L001": "Dr Lisa Lind"}


async def test_a_patient_reads_care_givers_and_units_but_no_staff(
        served: tuple[httpx.AsyncClient, bytes]) -> None:
    client, private = served
    names = (await client.get("/directory/names", headers=_as(private, Role.PATIENT))).json()
    assert names["care_givers"]["SE2321000503-VG"] == "Region Östergötland"
    assert "SE2321000503-VE001" in names["care_units"]
    assert names["people"] == {}


async def test_names_need_a_page_role_and_a_token(served: tuple[httpx.AsyncClient, bytes]) -> None:
    client, private = served
    assert (await client.get("/directory/names")).status_code == 401
    assert (await client.get("/directory/names", headers=_as(private, Role.PRODUCER))).status_code == 403


async def test_without_a_directory_the_names_are_empty(tmp_path: Path) -> None:
    client, private = await _client(tmp_path, None)
    async with client:
        answer = await client.get("/directory/names", headers=_as(private, Role.CLINICIAN))
    assert answer.json() == {"care_givers": {}, "care_units": {}, "people": {}}

