"""Issue 21: an attacker holding a valid token, over the whole running nation (tests/national.py).

Each test is one finding of the security probe, tried through the public APIs as the probe tried
it, and fails on the code before the fix. Every test uses patients of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from npo_bench.nation import Nation, running_nation
from npo_deploy.tokens import DEMO_GIVER, DEMO_UNIT
from npo_platform.identity import Principal, Role

pytestmark = pytest.mark.integration

# A clinician of another care giver than the demo clinician's (and of none the nation's producers
# are: whatever they read needs a relation and consent).
OTHER_GIVER, OTHER_UNIT = "SE2321000099-VG", "SE2321000099-VE001"
OTHER = Principal(sub="SE2321000099-L001", name="Dr Other", roles=frozenset({Role.CLINICIAN}),
                  care_unit=OTHER_UNIT, care_giver=OTHER_GIVER, assignment="A1", purpose="care")


@pytest.fixture(scope="module")
def nation(kafka_bootstrap_servers: str, database_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    with running_nation(kafka_bootstrap_servers, database_url, tmp_path_factory.mktemp("nation"),
                        population=600) as running:
        yield running


@pytest.fixture(scope="module")
def _patients(nation: Nation) -> Iterator[str]:
    """People with records at a care giver other than the demo clinician's."""
    return (p.patient_id for p in nation.source.people if p.patient_id != nation.patient
            and any(o.care_giver != DEMO_GIVER for o in nation.producers_of(p.patient_id)))


@pytest.fixture
def patient(_patients: Iterator[str]) -> str:
    return next(_patients)


def later(days: float = 1) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def command(http: httpx.AsyncClient, nation: Nation, path: str, body: dict[str, Any],
                  who: Principal | Role = Role.CLINICIAN) -> httpx.Response:
    return await http.post(f"{nation.consent}/v1/{path}", json=body, headers=nation.headers(who))


async def registered(http: httpx.AsyncClient, nation: Nation, path: str, body: dict[str, Any],
                     who: Principal | Role = Role.CLINICIAN) -> str:
    answer = await command(http, nation, path, body, who)
    assert answer.status_code == 201, answer.text
    record_id: str = answer.json()["record_id"]
    return record_id


def refused(answer: httpx.Response, code: str, status: int = 403) -> None:
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text


async def overview(http: httpx.AsyncClient, nation: Nation, patient: str,
                   who: Principal | Role = Role.CLINICIAN) -> httpx.Response:
    return await http.post(f"{nation.query}/v1/overview", json={"patientId": patient},
                           headers=nation.headers(who))


def holder_of(nation: Nation, patient: str) -> Principal:
    """A clinician of a care giver holding the patient's information (not the demo one)."""
    org = next(o for o in sorted(nation.producers_of(patient), key=lambda o: o.logical_address)
               if o.care_giver != DEMO_GIVER)
    return Principal(sub=f"{org.care_giver.split('-')[0]}-L900", name="Dr Holder",
                     roles=frozenset({Role.CLINICIAN}), care_unit=org.care_unit(1),
                     care_giver=org.care_giver, assignment="A1", purpose="care")


# Finding 1 (high): anyone could revoke anyone's protection.

async def test_a_block_is_revoked_only_by_its_care_giver_or_the_patient(
    nation: Nation, patient: str
) -> None:
    holder = holder_of(nation, patient)
    async with httpx.AsyncClient(timeout=30) as http:
        block = await registered(http, nation, "blocks", {"patient_id": patient,
                                                          "care_giver": holder.care_giver},
                                 nation.patient_self(patient))
        for attacker in (Role.CLINICIAN, OTHER, nation.patient_self(nation.patient)):
            refused(await command(http, nation, f"blocks/{block}/revoke", {}, attacker),
                    "record.out_of_scope")
        await registered(http, nation, "relations", {"patient_id": patient})
        await registered(http, nation, "consents", {"patient_id": patient, "care_unit": DEMO_UNIT,
                                                    "valid_to": later()})
        still = (await overview(http, nation, patient)).json()
        assert still["blockedInformationExists"] is True  # the block holds
        lifted = await command(http, nation, f"blocks/{block}/revoke", {}, holder)
        assert lifted.status_code == 200, lifted.text


async def test_relations_and_consents_are_revoked_only_by_their_own_unit(
    nation: Nation, patient: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        relation = await registered(http, nation, "relations", {"patient_id": patient})
        consent = await registered(http, nation, "consents", {
            "patient_id": patient, "care_unit": DEMO_UNIT, "valid_to": later()})
        for path in (f"relations/{relation}/revoke", f"consents/{consent}/revoke"):
            for attacker in (OTHER, nation.patient_self(patient)):
                refused(await command(http, nation, path, {}, attacker), "record.out_of_scope")
        assert (await overview(http, nation, patient)).status_code == 200  # both still hold
        for path in (f"consents/{consent}/revoke", f"relations/{relation}/revoke"):
            assert (await command(http, nation, path, {})).status_code == 200


# Finding 2 (medium): consents and blocks for somebody else.

async def test_a_consent_is_given_only_to_the_registering_unit_or_a_person_of_it(
    nation: Nation, patient: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        refused(await command(http, nation, "consents", {
            "patient_id": patient, "care_unit": OTHER_UNIT, "valid_to": later()}),
            "consent.not_own_unit")
        # A consent naming a user of another unit covers that user at the registering unit only:
        # from their own unit they are refused as without consent.
        await registered(http, nation, "consents", {"patient_id": patient, "user": OTHER.sub,
                                                    "valid_to": later()})
        await registered(http, nation, "relations", {"patient_id": patient}, OTHER)
        answer = await overview(http, nation, patient, OTHER)
    assert answer.status_code == 403, answer.text
    assert (answer.json()["code"], answer.json()["reasonCode"]) == ("access.denied", "no_consent")


async def test_a_block_is_placed_only_by_the_holding_care_giver_or_the_patient(
    nation: Nation, patient: str
) -> None:
    holder = holder_of(nation, patient)
    body = {"patient_id": patient, "care_giver": holder.care_giver}
    async with httpx.AsyncClient(timeout=30) as http:
        refused(await command(http, nation, "blocks", body), "block.not_own_care_giver")
        refused(await command(http, nation, "blocks", body, nation.patient_self(nation.patient)),
                "block.not_own_care_giver")
        assert (await command(http, nation, "blocks", body, holder)).status_code == 201
        assert (await command(http, nation, "blocks", body, nation.patient_self(patient))).status_code == 201
