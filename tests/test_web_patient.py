"""The patient's own access-log extract in real headless Chromium, end to end.

The demo clinician reads the demo patient's overview (relation and consent registered at the
consent service); a clinician of another care giver opens it by emergency access. The patient's
page shows both accesses: who (care giver, unit), when, what kind of information, why, with the
emergency access marked. A clinician's token is refused, and the page has no patient field.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from npo_bench.nation import Nation, running_nation
from npo_deploy.fhir_validator import FhirValidator
from npo_platform.identity import Principal, Role
from npo_simulator.organisations import nation as nation_of_simulator

pytestmark = pytest.mark.integration
WAIT_S = 20
SKANE = nation_of_simulator().by_name("Region Skåne")
EMERGENCY_DOCTOR = Principal(  # at a unit of the directory: named on the patient's page
    sub=SKANE.hsa_id("N002"), name="Dr Nora Nöd", roles=frozenset({Role.CLINICIAN}),
    care_unit=SKANE.care_unit(2), care_giver=SKANE.care_giver, assignment="A8", purpose="care",
)

STRANGER = Principal(  # a clinician with no relation to the patient: refused, and logged
    sub="SE2321000016-S003", name="Dr Sam Stranger", roles=frozenset({Role.CLINICIAN}),
    care_unit="SE2321000016-ORT3", care_giver="SE2321000016-RG03", assignment="A9", purpose="care",
)


def _post(nation: Nation, url: str, who: Principal | Role, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(url, json=body, headers=nation.headers(who), timeout=30)
    assert answer.status_code in (200, 201), answer.text
    found: dict[str, Any] = answer.json()
    return found


def _extract(nation: Nation, who: Principal | Role) -> httpx.Response:
    return httpx.post(f"{nation.audit}/audit/extract", json={}, headers=nation.headers(who), timeout=10)


@pytest.fixture(scope="module")
def nation(kafka_bootstrap_servers: str, database_url: str, tmp_path_factory: pytest.TempPathFactory,
           browser: webdriver.Chrome) -> Iterator[Nation]:
    with running_nation(kafka_bootstrap_servers, database_url, tmp_path_factory.mktemp("nation")) as running:
        yield running
        browser.get("about:blank")  # close the pages' connections before the servers stop


@pytest.fixture(scope="module")
def extract(nation: Nation) -> list[dict[str, Any]]:
    """Two real reads of the demo patient's overview and a refused attempt; the patient's extract
    once all three are logged."""
    patient = {"patient_id": nation.patient}
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    _post(nation, f"{nation.consent}/v1/relations", Role.CLINICIAN, patient)
    unit = nation.people[Role.CLINICIAN].care_unit
    consent = {**patient, "valid_to": later, "care_unit": unit}
    _post(nation, f"{nation.consent}/v1/consents", Role.CLINICIAN, consent)
    _post(nation, f"{nation.query}/v1/overview", Role.CLINICIAN, {"patientId": nation.patient})
    _post(nation, f"{nation.consent}/v1/relations", EMERGENCY_DOCTOR, patient)
    emergency = {**patient, "reason": "stroke alert"}
    _post(nation, f"{nation.consent}/v1/emergency-accesses", EMERGENCY_DOCTOR, emergency)
    _post(nation, f"{nation.query}/v1/overview", EMERGENCY_DOCTOR, {"patientId": nation.patient})
    refused = httpx.post(f"{nation.query}/v1/overview", json={"patientId": nation.patient},
                         headers=nation.headers(STRANGER), timeout=30)
    assert refused.status_code == 403, refused.text  # no relation: an attempt, logged too
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        answer = _extract(nation, Role.PATIENT)
        answer.raise_for_status()
        if len(items := answer.json()["items"]) >= 3:
            return list(items)
        time.sleep(0.2)
    raise AssertionError("the three accesses never reached the patient's extract")


def _open(browser: webdriver.Chrome, nation: Nation, who: Role) -> WebDriverWait[webdriver.Chrome]:
    browser.get_log("browser")  # type: ignore[no-untyped-call]
    browser.get("about:blank")  # a new page: only the fragment would differ from the last test's
    browser.get(f"{nation.audit}/ui/patient.html#token={nation.token(who)}")
    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException])
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=who]")))
    return wait


def _hsa(row: Any, cell: str) -> str:
    """The HSA-id behind the name a row's cell shows."""
    found = row.find_element(By.CSS_SELECTOR, f"[data-testid={cell}] [data-hsa]")
    return str(found.get_attribute("data-hsa"))


def _assert_quiet_console(browser: webdriver.Chrome) -> None:
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[no-untyped-call]
    assert not severe, severe


def test_the_patient_sees_who_read_their_record_when_and_why(
    browser: webdriver.Chrome, nation: Nation, extract: list[dict[str, Any]], screenshot: Any
) -> None:
    clinician = nation.people[Role.CLINICIAN]
    [read] = [i for i in extract if i["care_unit"] == clinician.care_unit]
    [emergency] = [i for i in extract if i["care_unit"] == EMERGENCY_DOCTOR.care_unit]
    wait = _open(browser, nation, Role.PATIENT)

    rows = wait.until(lambda b: (found := b.find_elements(By.CSS_SELECTOR, "[data-testid=extract-row]"))
                      and len(found) >= 3 and found)
    units = (str(clinician.care_unit), str(EMERGENCY_DOCTOR.care_unit), str(STRANGER.care_unit))
    by_unit = {_hsa(r, "extract-care-unit"): r for r in rows}
    mine = by_unit[units[0]]
    assert clinician.care_giver
    # Care giver and unit by name, the HSA-id on hover; a unit the directory lacks by its code.
    giver = mine.find_element(By.CSS_SELECTOR, "[data-testid=extract-care-giver] [data-hsa]")
    unit = mine.find_element(By.CSS_SELECTOR, "[data-testid=extract-care-unit] [data-hsa]")
    assert giver.text == nation.name_of(clinician.care_giver)
    assert giver.get_attribute("title") == clinician.care_giver
    assert (unit.text, unit.get_attribute("title")) == (nation.name_of(units[0]), units[0])
    assert giver.text == "Region Östergötland"
    assert unit.text == "Vårdcentralen Östergötland"
    assert clinician.care_unit not in mine.text
    assert "Akutmottagningen Skåne" in by_unit[units[1]].text
    assert nation.name_of(units[2]) is None
    assert units[2] in by_unit[units[2]].text  # not in the directory: its code
    stamp = mine.find_element(By.CSS_SELECTOR, "time")
    assert stamp.get_attribute("datetime") == read["access_time"]
    assert stamp.text.startswith(read["access_time"][:4])  # a readable local time, not empty
    assert "Vård och behandling" in mine.text
    assert not mine.find_elements(By.CSS_SELECTOR, "[data-testid=emergency]")
    assert not mine.find_elements(By.CSS_SELECTOR, "[data-testid=outcome]")  # answered in full
    attempt = by_unit[units[2]]
    assert attempt.find_element(By.CSS_SELECTOR, "[data-testid=outcome]").get_attribute(
        "data-outcome") == "denied"
    assert "Refused, nothing was shown" in attempt.text
    marked = by_unit[units[1]].find_element(By.CSS_SELECTOR, "[data-testid=emergency]")
    assert emergency["emergency"] is True
    assert "Emergency access" in marked.text
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "patientdatalagen" in page
    assert "Patient Data Act" in page
    assert nation.patient not in browser.page_source
    assert not browser.find_elements(By.CSS_SELECTOR, "main input, main textarea")  # no patient field
    assert clinician.name not in page  # care giver and unit, as the law's extract: not the person
    screenshot("extract")
    _assert_quiet_console(browser)


def test_the_patient_downloads_their_own_extract_as_fhir(
    browser: webdriver.Chrome, nation: Nation, extract: list[dict[str, Any]], screenshot: Any,
    fhir_validator: FhirValidator,
) -> None:
    wait = _open(browser, nation, Role.PATIENT)
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid=fhir-download]"))).click()

    link = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=fhir-link]")))
    assert f"({len(extract)} accesses)" in link.text
    assert (link.get_attribute("href") or "").startswith("blob:")
    answer = httpx.post(f"{nation.audit}/audit/extract?format=fhir", json={},
                        headers=nation.headers(Role.PATIENT), timeout=10)
    assert answer.headers["content-type"].startswith("application/fhir+json")
    bundle = answer.json()
    assert [str(issue) for issue in fhir_validator.errors(bundle)] == []
    assert len(bundle["entry"]) == len(extract)
    patients = {e["resource"]["entity"][0]["what"]["identifier"]["value"] for e in bundle["entry"]}
    assert patients == {nation.patient}  # only the patient's own
    for reader in (STRANGER, EMERGENCY_DOCTOR, nation.people[Role.CLINICIAN]):
        assert reader.sub not in answer.text  # care giver and unit, never the reader
    screenshot("fhir")
    _assert_quiet_console(browser)


def test_a_clinician_token_is_refused_on_the_patient_page(
    browser: webdriver.Chrome, nation: Nation, extract: list[dict[str, Any]], screenshot: Any
) -> None:
    wait = _open(browser, nation, Role.CLINICIAN)

    refused = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=refused]")))
    assert "only a patient's own log" in refused.text
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=extract-row]")
    assert _extract(nation, Role.CLINICIAN).status_code == 403  # and the API refuses it too
    screenshot("refused")
    _assert_quiet_console(browser)
