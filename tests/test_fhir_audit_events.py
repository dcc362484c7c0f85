"""The audit log as FHIR R4, from the real stack, checked by HAPI FHIR's validator and BALP's rules.

Every kind of access and consent event is made the real way (tests/national.py: every service,
the simulated producers, the real broker and database): reads allowed, in part (a block on one
producer's care giver), by emergency access and refused; relations, consents, a block and its
lift, an emergency access and one refused (no reason given), a protected identity registered and
revoked. The compliance officer's FHIR export of both kinds must be valid R4 (0 errors), in BALP's
shape, with every entry's fullUrl; so must each page of the officer's FHIR AuditEvent search,
which finds the same events. Each test prints how many resources the validator checked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from npo_bench.nation import Nation, running_nation
from npo_deploy.fhir_checks import balp_problems, bundle_problems, purpose_codes
from npo_deploy.fhir_validator import FhirValidator
from npo_deploy.testing import report_validated
from npo_platform.fhir import HSA_ID_SYSTEM, patient_id_system
from npo_platform.identity import Principal, Role

pytestmark = pytest.mark.integration
WAIT_S = 30
EMERGENCY_DOCTOR = Principal(
    sub="SE2321000016-N005", name="Dr Nina Nöd", roles=frozenset({Role.CLINICIAN}),
    care_unit="SE2321000016-AKM5", care_giver="SE2321000016-RG05", assignment="A5", purpose="care",
)
STRANGER = Principal(
    sub="SE2321000016-S006", name="Dr Sven Stranger", roles=frozenset({Role.CLINICIAN}),
    care_unit="SE2321000016-ORT6", care_giver="SE2321000016-RG06", assignment="A6", purpose="care",
)
REASON = "unconscious after a fall"


@dataclass(frozen=True)
class Made:
    reads: dict[str, str]  # what happened → access event id
    consent_events: int  # consent events the commands made


def _post(nation: Nation, url: str, who: Principal | Role, body: dict[str, Any],
          expected: int = 201) -> dict[str, Any]:
    answer = httpx.post(url, json=body, headers=nation.headers(who), timeout=30)
    assert answer.status_code == expected, answer.text
    found: dict[str, Any] = answer.json()
    return found


def _read(nation: Nation, who: Principal | Role, expected: int = 200) -> str:
    found = _post(nation, f"{nation.query}/v1/overview", who, {"patientId": nation.patient}, expected)
    return str(found.get("accessEventId", ""))


@pytest.fixture(scope="module")
def nation(kafka_bootstrap_servers: str, database_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    with running_nation(kafka_bootstrap_servers, database_url, tmp_path_factory.mktemp("nation")) as running:
        yield running


@pytest.fixture(scope="module")
def made(nation: Nation) -> Made:
    consent = f"{nation.consent}/v1"
    patient = {"patient_id": nation.patient}
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    clinician = nation.people[Role.CLINICIAN]
    _post(nation, f"{consent}/relations", Role.CLINICIAN, patient)
    _post(nation, f"{consent}/consents", Role.CLINICIAN, {**patient, "valid_to": later,
                                                          "care_unit": clinician.care_unit})
    reads = {"allowed": _read(nation, Role.CLINICIAN)}
    other = sorted({o.care_giver for o in nation.producers_of(nation.patient)} - {clinician.care_giver})[0]
    block = _post(nation, f"{consent}/blocks", Role.PATIENT, {**patient, "care_giver": other,
                                                              "reason": "not for everyone"})
    reads["partial"] = _read(nation, Role.CLINICIAN)
    _post(nation, f"{consent}/lifts", Role.PATIENT, {**patient, "block_id": block["record_id"],
                                                       "valid_to": later, "patient_consent": True,
                                                       "care_unit": clinician.care_unit,
                                                       "reason": "the patient agreed"})
    _post(nation, f"{consent}/relations", EMERGENCY_DOCTOR, patient)
    _post(nation, f"{consent}/emergency-accesses", EMERGENCY_DOCTOR, {**patient, "reason": REASON})
    reads["emergency"] = _read(nation, EMERGENCY_DOCTOR)
    _post(nation, f"{consent}/emergency-accesses", EMERGENCY_DOCTOR, patient, 422)  # no reason
    _read(nation, STRANGER, expected=403)
    protected = _post(nation, f"{consent}/protected-identities", Role.CLINICIAN,
                      {**patient, "reason": "sekretessmarkering"})
    _post(nation, f"{consent}/protected-identities/{protected['record_id']}/revoke", Role.CLINICIAN, {}, 200)
    return Made(reads, consent_events=9)


def _export(nation: Nation, kind: str, at_least: int) -> dict[str, Any]:
    """The officer's FHIR export of the patient's ``kind`` records, once ``at_least`` are logged."""
    deadline = time.monotonic() + WAIT_S
    while True:
        answer = httpx.post(f"{nation.audit}/audit/export?format=fhir",
                            json={"patient_id": nation.patient, "kind": kind},
                            headers=nation.headers(Role.COMPLIANCE_OFFICER), timeout=30)
        assert answer.status_code == 200, answer.text
        bundle: dict[str, Any] = answer.json()
        bundle.setdefault("entry", [])  # an empty searchset has no entry element at all
        if len(bundle["entry"]) >= at_least or time.monotonic() > deadline:
            print(f"{kind}: {len(bundle['entry'])} after {WAIT_S - (deadline - time.monotonic()):.1f} s")
            return bundle
        time.sleep(0.3)


def _valid(validator: FhirValidator, resource: dict[str, Any]) -> None:
    assert [str(issue) for issue in validator.errors(resource)] == []


@dataclass
class Counted:
    """The validator, and how many resources it had validated when the test began."""

    validator: FhirValidator
    test: str
    before: int

    def done(self) -> None:
        """After the test's last assertion: its count for the session's summary."""
        report_validated(self.test, self.validator.resources - self.before)


@pytest.fixture
def counted(fhir_validator: FhirValidator, request: pytest.FixtureRequest) -> Counted:
    return Counted(fhir_validator, request.node.name, fhir_validator.resources)


def test_the_access_log_exports_as_valid_fhir_in_balp_shape(
    nation: Nation, made: Made, counted: Counted
) -> None:
    bundle = _export(nation, "access", at_least=4)

    _valid(counted.validator, bundle)
    assert bundle_problems(bundle) == []
    events = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    assert len(events) == 4
    for event in events.values():
        assert balp_problems(event) == [], event
    allowed, partial = events[made.reads["allowed"]], events[made.reads["partial"]]
    emergency = events[made.reads["emergency"]]
    [denied] = [e for e in events.values() if e["outcome"] == "8"]
    assert (allowed["outcome"], partial["outcome"], emergency["outcome"]) == ("0", "4", "0")
    assert allowed["meta"]["profile"] == emergency["meta"]["profile"] != []
    assert "meta" not in partial
    assert "meta" not in denied
    assert purpose_codes(emergency) == {"ETREAT"}
    assert emergency["purposeOfEvent"][0]["text"] == REASON
    assert purpose_codes(allowed) == {"TREAT"}
    user = next(a for a in denied["agent"] if a.get("requestor"))
    assert user["who"]["identifier"] == {"system": HSA_ID_SYSTEM, "value": STRANGER.sub}
    counted.done()


def test_the_consent_log_exports_as_valid_fhir_in_balp_shape(
    nation: Nation, made: Made, counted: Counted
) -> None:
    bundle = _export(nation, "consent", at_least=made.consent_events)

    _valid(counted.validator, bundle)
    assert bundle_problems(bundle) == []
    events = [e["resource"] for e in bundle["entry"]]
    for event in events:
        assert balp_problems(event) == [], event
    subjects = {(_detail(e, "subject"), _detail(e, "change")) for e in events}
    assert subjects == {("patient relation", "registered"), ("consent", "registered"),
                        ("block", "registered"), ("block lift", "registered"),
                        ("emergency access", "registered"), ("emergency access", "refused"),
                        ("protected identity", "registered"), ("protected identity", "revoked")}
    assert sorted(e["outcome"] for e in events) == ["0"] * (made.consent_events - 1) + ["8"]
    [refused] = [e for e in events if e["outcome"] == "8"]
    assert "meta" not in refused  # a refusal claims no BALP profile (its outcome is fixed to 0)
    [issue] = refused["contained"][0]["issue"]
    assert "emergency.reason_required" in str(issue)
    [emergency] = [e for e in events if _detail(e, "subject") == "emergency access"
                   and e["outcome"] == "0"]
    assert purpose_codes(emergency) == {"ETREAT"}
    assert emergency["purposeOfEvent"][0]["text"] == REASON
    counted.done()


def test_the_officers_fhir_search_pages_through_the_same_events_valid_in_balp_shape(
    nation: Nation, made: Made, counted: Counted
) -> None:
    logged = [*_export(nation, "access", at_least=4)["entry"],
              *_export(nation, "consent", at_least=made.consent_events)["entry"]]
    officer = nation.headers(Role.COMPLIANCE_OFFICER)
    form = {"patient": f"{patient_id_system(nation.patient)}|{nation.patient}", "_count": "3"}
    pages = [httpx.post(f"{nation.audit}/fhir/r4/AuditEvent/_search", data=form, headers=officer, timeout=30)]
    while following := next((k["url"] for k in pages[-1].json()["link"] if k["relation"] == "next"), None):
        assert nation.patient[2:] not in following
        pages.append(httpx.get(following, headers=officer, timeout=30))

    for page in pages:
        assert page.status_code == 200, page.text
        _valid(counted.validator, page.json())
        assert bundle_problems(page.json()) == []
        for found in page.json()["entry"]:
            assert balp_problems(found["resource"]) == [], found["resource"]
    ids = [e["resource"]["id"] for page in pages for e in page.json()["entry"]]
    assert sorted(ids) == sorted(e["resource"]["id"] for e in logged)  # each once, both kinds
    assert len(pages) == -(-len(ids) // 3)
    refused = httpx.post(f"{nation.audit}/fhir/r4/AuditEvent/_search", headers=officer, timeout=30,
                         data={"agent": f"{HSA_ID_SYSTEM}|{STRANGER.sub}", "outcome": "8"}).json()
    users = [e["resource"]["agent"][0]["who"]["identifier"]["value"] for e in refused["entry"]]
    assert users == [STRANGER.sub]
    counted.done()


def _detail(event: dict[str, Any], name: str) -> str:
    return next(d["valueString"] for e in event["entity"] for d in e.get("detail", []) if d["type"] == name)
