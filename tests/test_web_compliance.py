"""The compliance officer's view of the access log in real headless Chromium, end to end.

Access events are made the real way: the demo clinician registers a relation and a consent at
the consent service and reads the overview at the query service; a second clinician (another
care giver) opens the record by emergency access, which the audit's `emergency` rule flags.
The query service writes the access events to Kafka, the audit worker chains them into
PostgreSQL, and the officer's page finds, streams, follows up and verifies them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from npo_bench.nation import Nation, running_nation
from npo_platform.identity import Principal, Role

pytestmark = pytest.mark.integration
WAIT_S = 20
# A clinician of another care giver, who opens the demo patient's record by emergency access.
EMERGENCY_DOCTOR = Principal(
    sub="SE2321000016-N001", name="Dr Nils Nöd", roles=frozenset({Role.CLINICIAN}),
    care_unit="SE2321000016-AKM1", care_giver="SE2321000016-RG01", assignment="A9", purpose="care",
)


@dataclass(frozen=True)
class Accesses:
    read: str  # the demo clinician's read (consent)
    emergency: str  # the emergency doctor's read (flagged)


def register(nation: Nation, who: Principal | Role, path: str, body: dict[str, Any]) -> None:
    answer = httpx.post(f"{nation.consent}/v1/{path}", json=body, headers=nation.headers(who), timeout=30)
    assert answer.status_code == 201, answer.text


def read_overview(nation: Nation, who: Principal | Role) -> str:
    """The overview read through the query service; its access event's id."""
    answer = httpx.post(f"{nation.query}/v1/overview", json={"patientId": nation.patient},
                        headers=nation.headers(who), timeout=30)
    assert answer.status_code == 200, answer.text
    event_id: str = answer.json()["accessEventId"]
    return event_id


def logged(nation: Nation, event_id: str) -> dict[str, Any]:
    """Wait until the audit log holds the access event; its record as the officer sees it."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        answer = httpx.post(f"{nation.audit}/audit/search", json={"event_id": event_id},
                            headers=nation.headers(Role.COMPLIANCE_OFFICER), timeout=10)
        answer.raise_for_status()
        if items := answer.json()["items"]:
            item: dict[str, Any] = items[0]
            return item
        time.sleep(0.2)
    raise AssertionError(f"access event {event_id} never reached the audit log")


@pytest.fixture(scope="module")
def nation(kafka_bootstrap_servers: str, database_url: str, tmp_path_factory: pytest.TempPathFactory,
           browser: webdriver.Chrome) -> Iterator[Nation]:
    with running_nation(kafka_bootstrap_servers, database_url, tmp_path_factory.mktemp("nation")) as running:
        yield running
        browser.get("about:blank")  # end the page's live stream, else the servers wait for it


@pytest.fixture(scope="module")
def accesses(nation: Nation) -> Accesses:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    register(nation, Role.CLINICIAN, "relations", {"patient_id": nation.patient})
    register(nation, Role.CLINICIAN, "consents", {"patient_id": nation.patient, "valid_to": later,
                                                  "care_unit": nation.people[Role.CLINICIAN].care_unit})
    read = read_overview(nation, Role.CLINICIAN)
    register(nation, EMERGENCY_DOCTOR, "relations", {"patient_id": nation.patient})
    register(nation, EMERGENCY_DOCTOR, "emergency-accesses",
             {"patient_id": nation.patient, "reason": "unconscious on arrival"})
    emergency = read_overview(nation, EMERGENCY_DOCTOR)
    assert logged(nation, read)["user_hsa_id"] == nation.people[Role.CLINICIAN].sub
    assert logged(nation, emergency)["basis"] == "emergency"
    return Accesses(read, emergency)


def open_page(browser: webdriver.Chrome, nation: Nation) -> WebDriverWait[webdriver.Chrome]:
    browser.get_log("browser")  # type: ignore[no-untyped-call]  # drop what earlier tests left
    browser.get("about:blank")  # a new page: only the fragment would differ from the last test's
    browser.get(f"{nation.audit}/ui/#token={nation.token(Role.COMPLIANCE_OFFICER)}")
    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException])
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-testid=who]"), "Cecilia Controller"))
    # The sections come after the directory's names have loaded, all at once: wait for one.
    wait.until(ec.presence_of_element_located((By.ID, "s-patient_id")))
    return wait


def assert_quiet_console(browser: webdriver.Chrome) -> None:
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[no-untyped-call]
    assert not severe, severe


def present(browser: webdriver.Chrome, css: str) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, css)


def test_the_officer_searches_the_patients_accesses_and_pages_and_exports(
    browser: webdriver.Chrome, nation: Nation, accesses: Accesses, screenshot: Any
) -> None:
    wait = open_page(browser, nation)
    browser.find_element(By.ID, "s-patient_id").send_keys(nation.patient)
    limit = browser.find_element(By.ID, "s-limit")
    limit.clear()
    limit.send_keys("1")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=search]").click()

    first = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=result-row]")))
    assert first.get_attribute("data-event-id") == accesses.emergency  # newest first
    browser.find_element(By.CSS_SELECTOR, "[data-testid=next-page]").click()
    row = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f"[data-testid=result-row][data-event-id='{accesses.read}']")))
    assert "Dr Lisa Lind" in row.text
    clinician = nation.people[Role.CLINICIAN]
    assert clinician.care_unit
    assert clinician.care_giver
    named = {e.get_attribute("title"): e.text for e in row.find_elements(By.CSS_SELECTOR, "[data-hsa]")}
    assert named == {clinician.sub: "Dr Lisa Lind", clinician.care_unit: "Vårdcentralen Östergötland",
                     clinician.care_giver: "Region Östergötland"}  # names, the HSA-ids on hover
    assert clinician.care_unit not in row.text
    limit.clear()
    limit.send_keys("25")
    Select(browser.find_element(By.ID, "s-basis")).select_by_value("consent")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=search]").click()
    wait.until(lambda b: [r.get_attribute("data-event-id") for r in present(b, "[data-testid=result-row]")]
               == [accesses.read])
    browser.find_element(By.CSS_SELECTOR, "[data-testid=export]").click()
    link = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=export-link]")))
    assert "(1 records)" in link.text
    assert (link.get_attribute("href") or "").startswith("blob:")
    Select(browser.find_element(By.ID, "s-format")).select_by_value("fhir")  # the FHIR R4 export
    browser.find_element(By.CSS_SELECTOR, "[data-testid=export]").click()
    exported = (By.CSS_SELECTOR, "[data-testid=export-link][data-format=fhir]")
    fhir = wait.until(ec.presence_of_element_located(exported))
    assert "(1 records)" in fhir.text
    assert fhir.get_attribute("download") == "access-log.fhir.json"
    screenshot("search")
    assert_quiet_console(browser)


def test_the_live_stream_shows_an_access_made_while_the_page_is_open_and_can_pause(
    browser: webdriver.Chrome, nation: Nation, accesses: Accesses, screenshot: Any
) -> None:
    wait = open_page(browser, nation)
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-testid=live-status]"), "Live:"))
    assert not present(browser, f"[data-testid=live-entry][data-event-id='{accesses.read}']")

    fresh = read_overview(nation, Role.CLINICIAN)
    entry = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f"[data-testid=live-entry][data-event-id='{fresh}']")))
    assert "Dr Lisa Lind" in entry.text
    assert "Vårdcentralen Östergötland" in entry.text
    screenshot("live")

    browser.find_element(By.CSS_SELECTOR, "[data-testid=live-pause]").click()
    held = read_overview(nation, Role.CLINICIAN)
    status = (By.CSS_SELECTOR, "[data-testid=live-status]")
    wait.until(ec.text_to_be_present_in_element(status, "1 new record(s) waiting"))
    assert not present(browser, f"[data-testid=live-entry][data-event-id='{held}']")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=live-pause]").click()
    entries = [e.get_attribute("data-event-id") for e in present(browser, "[data-testid=live-entry]")]
    assert entries[:2] == [held, fresh]  # newest first
    assert_quiet_console(browser)


def test_a_flagged_emergency_access_is_reviewed_and_leaves_the_queue(
    browser: webdriver.Chrome, nation: Nation, accesses: Accesses, screenshot: Any
) -> None:
    wait = open_page(browser, nation)
    flagged = f"[data-testid=queue-row][data-rule=emergency][data-event-id='{accesses.emergency}']"
    row = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, flagged)))
    assert "To review" in row.text

    row.find_element(By.CSS_SELECTOR, "[data-testid=open-flag]").click()
    panel = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=review-panel]")))
    wait.until(lambda _: "Dr Nils Nöd" in panel.text)  # the record, opened
    assert "Emergency access" in panel.text
    browser.find_element(By.ID, "review-note").send_keys("Patient unconscious in the ER; access justified.")
    Select(browser.find_element(By.ID, "review-conclusion")).select_by_value("justified")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=save-review]").click()

    status = (By.CSS_SELECTOR, "[data-testid=queue-status]")
    wait.until(ec.text_to_be_present_in_element(status, "saved in the log"))
    wait.until(lambda b: not present(b, flagged))
    review = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=review-row]")))
    assert "access justified" in review.text
    assert "Justified access" in review.text
    browser.find_element(By.ID, "q-reviewed").click()
    reviewed = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, flagged)))
    assert "Reviewed" in reviewed.text
    screenshot("review")
    assert_quiet_console(browser)


def test_verification_shows_every_chain_intact(
    browser: webdriver.Chrome, nation: Nation, accesses: Accesses, screenshot: Any
) -> None:
    wait = open_page(browser, nation)
    browser.find_element(By.CSS_SELECTOR, "[data-testid=verify]").click()

    status = (By.CSS_SELECTOR, "[data-testid=verify-status]")
    wait.until(ec.text_to_be_present_in_element(status, "chains intact"))
    rows = present(browser, "[data-testid=chain-row]")
    chains = {r.get_attribute("data-chain"): r.text for r in rows}
    assert any(name and name.startswith("access-p") for name in chains), chains
    assert all("Intact" in text for text in chains.values()), chains
    screenshot("verification")
    assert_quiet_console(browser)
