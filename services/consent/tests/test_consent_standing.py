"""The reader's standing with a patient (for the clinician's web view): rules and HTTP route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from consent_support import ANNA, BO, CECILIA, T0, UA1, bearer, new_patient
from fastapi import FastAPI

from npo_consent.config import ConsentSettings
from npo_consent.domain import Kind, PatientState, Record, standing_of
from npo_consent.main import create_app
from npo_platform.identity import Role, ensure_local_keypair


def _record(kind: Kind, *, unit: str | None = UA1, user: str | None = None, days: float = 1,
            revoked: bool = False) -> Record:
    return Record(id=f"{kind}-{unit}-{user}-{days}", kind=kind, patient_id="x",
                  valid_from=T0 - timedelta(days=1), registered_at=T0 - timedelta(days=1),
                  registered_by="r", valid_to=T0 + timedelta(days=days), care_unit=unit, user=user,
                  revoked_at=T0 - timedelta(hours=1) if revoked else None)


def test_standing_shows_the_readers_own_records_in_force_only() -> None:
    state = PatientState((
        _record(Kind.RELATION, days=2), _record(Kind.RELATION, days=9),
        _record(Kind.CONSENT, unit=None, user=BO.user),  # names a colleague: not Anna's
        _record(Kind.CONSENT, revoked=True),
        _record(Kind.EMERGENCY, user=ANNA.user),
    ))
    anna = standing_of(ANNA, state, T0)
    assert anna.relation is not None
    assert anna.relation.valid_to == T0 + timedelta(days=9)
    assert anna.consent is None
    assert anna.emergency is not None
    bo = standing_of(BO, state, T0)
    assert bo.consent is not None
    assert bo.emergency is None
    assert standing_of(CECILIA, state, T0).relation is None  # another unit of the same giver
    assert standing_of(ANNA, state, T0 + timedelta(days=10)).relation is None  # expired


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    private, public = ensure_local_keypair(tmp_path_factory.mktemp("keys"))
    return private.read_bytes(), public


@pytest.fixture(scope="module")
async def client(database_url: str, keys: tuple[bytes, Path]) -> AsyncIterator[httpx.AsyncClient]:
    settings = ConsentSettings(database_url=database_url, db_schema="consent_standing",
                               background=False, jwt_public_key_path=keys[1])
    app: FastAPI = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://consent.test") as http:
            yield http


@pytest.mark.integration
async def test_the_standing_route_tells_relation_consent_and_emergency_as_registered(
    client: httpx.AsyncClient, keys: tuple[bytes, Path]
) -> None:
    patient, anna = new_patient(), bearer(keys[0], ANNA)
    before = await client.post("/v1/standing", json={"patient_id": patient}, headers=anna)
    assert before.status_code == 200, before.text
    assert before.json() == {"care_unit": UA1, "relation": None, "consent": None,
                             "emergency": None, "protected_identity": False}
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for path, body in (("relations", {}), ("consents", {"care_unit": UA1, "valid_to": later}),
                       ("emergency-accesses", {"reason": "unconscious"})):
        made = await client.post(f"/v1/{path}", json={"patient_id": patient, **body}, headers=anna)
        assert made.status_code == 201, made.text
    after = (await client.post("/v1/standing", json={"patient_id": patient}, headers=anna)).json()
    assert after["relation"]["scope"] == "unit"
    assert after["consent"]["valid_to"] is not None
    assert after["emergency"] is not None


@pytest.mark.integration
async def test_the_standing_route_is_for_clinicians_and_validates_the_patient_id(
    client: httpx.AsyncClient, keys: tuple[bytes, Path]
) -> None:
    body = {"patient_id": new_patient()}
    assert (await client.post("/v1/standing", json=body)).status_code == 401
    operator = bearer(keys[0], ANNA, Role.OPERATOR)
    assert (await client.post("/v1/standing", json=body, headers=operator)).status_code == 403
    bad = await client.post("/v1/standing", json={"patient_id": "191212121213"},
                            headers=bearer(keys[0], ANNA))
    assert bad.status_code == 422
    assert "191212121213" not in bad.text  # a rejected id is never echoed
