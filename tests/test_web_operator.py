"""The operator's web view in real headless Chromium against the whole running nation.

The coverage matrix and chart come from the index (the simulated producers' notifications,
Kafka, the index's coverage counts) named through the simulator's organisation directory; the
search charts from the audit log: real overview reads by the demo clinician (Region
Östergötland) and by a clinician of Motala kommun, through consent and query, chained by the
audit worker, counted by the audit's search statistics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from npo_bench.nation import Nation, running_nation
from npo_platform.identity import Principal, Role
from npo_simulator.directory import modelled_inhabitants
from npo_simulator.organisations import Kind, Organisation

pytestmark = pytest.mark.integration
WAIT_S = 20
REGION_READS, TOWN_READS = 3, 2


def town_doctor(motala: Organisation) -> Principal:
    return Principal(sub=motala.hsa_id("L001"), name="Dr Maja Motala", roles=frozenset({Role.CLINICIAN}),
                     care_unit=motala.care_unit(1), care_giver=motala.care_giver, assignment="A2",
                     purpose="care")


@pytest.fixture(scope="module")
def nation(kafka_bootstrap_servers: str, database_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    with running_nation(kafka_bootstrap_servers, database_url, tmp_path_factory.mktemp("nation")) as running:
        yield running


def _register(nation: Nation, who: Principal | Role, path: str, body: dict[str, Any]) -> None:
    answer = httpx.post(f"{nation.consent}/v1/{path}", json=body, headers=nation.headers(who), timeout=30)
    assert answer.status_code == 201, answer.text


def _read(nation: Nation, who: Principal | Role, times: int) -> None:
    unit = nation.people[who].care_unit if isinstance(who, Role) else who.care_unit
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    _register(nation, who, "relations", {"patient_id": nation.patient})
    _register(nation, who, "consents", {"patient_id": nation.patient, "valid_to": later, "care_unit": unit})
    for _ in range(times):
        answer = httpx.post(f"{nation.query}/v1/overview", json={"patientId": nation.patient},
                            headers=nation.headers(who), timeout=30)
        assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def searches(nation: Nation) -> dict[str, int]:
    """Real overview reads, waited for until the audit's statistics count them."""
    motala = nation.source.nation.by_name("Motala kommun")
    _read(nation, Role.CLINICIAN, REGION_READS)
    _read(nation, town_doctor(motala), TOWN_READS)
    wanted = {nation.people[Role.CLINICIAN].care_giver: REGION_READS, motala.care_giver: TOWN_READS}
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        answer = httpx.get(f"{nation.audit}/audit/statistics/searches",
                           headers=nation.headers(Role.OPERATOR), timeout=10)
        answer.raise_for_status()
        counted = {r["reader"]: r["searches"] for r in answer.json()["readers"]}
        if counted == wanted:
            return {str(k): v for k, v in counted.items()}
        time.sleep(0.2)
    raise AssertionError(f"the audit did not count the reads: {counted} != {wanted}")


def expected_coverage(nation: Nation) -> dict[str, set[int]]:
    """Per care giver, the categories its simulated records announce (what the index holds)."""
    found: dict[str, set[int]] = {}
    for person in nation.source.people:
        for record in nation.source.histories.of(person):
            if not record.social_services:
                found.setdefault(record.producer.care_giver, set()).add(record.category)
    return found


def open_page(browser: webdriver.Chrome, nation: Nation, who: Role = Role.OPERATOR) -> WebDriverWait[Any]:
    browser.get("about:blank")  # a new load: only the fragment would differ from the last page
    browser.get_log("browser")  # drop what earlier tests left
    browser.get(f"{nation.index}/ui/#token={nation.token(who)}")
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-testid=who]"),
                                                nation.people[who].name))
    return wait


def figures(browser: webdriver.Chrome, testid: str) -> dict[str, str]:
    """A chart's figures from its accessible table (label → formatted value)."""
    rows = browser.find_elements(By.CSS_SELECTOR, f"[data-testid={testid}] table tbody tr")
    return {r.find_element(By.TAG_NAME, "th").get_attribute("textContent") or "":
            r.find_element(By.TAG_NAME, "td").get_attribute("textContent") or "" for r in rows}


def matrix(browser: webdriver.Chrome) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for row in browser.find_elements(By.CSS_SELECTOR, "[data-testid=coverage-matrix] tbody tr"):
        cells = row.find_elements(By.CSS_SELECTOR, "td.yes")
        numbers = {int(c.get_attribute("data-category") or 0) for c in cells}
        found[row.get_attribute("data-hsa") or ""] = numbers
    return found


def assert_quiet_console(browser: webdriver.Chrome) -> None:
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_coverage_per_organisation_and_category_is_the_simulated_nations(
    browser: webdriver.Chrome, nation: Nation, screenshot: Any
) -> None:
    expected = expected_coverage(nation)
    country = nation.source.nation
    wait = open_page(browser, nation)
    wait.until(lambda b: len(matrix(b)) == len(expected))
    assert matrix(browser) == expected
    for org in country.producers:
        if org.care_giver in expected:
            assert expected[org.care_giver] <= org.publishes, org.name
    shares = figures(browser, "coverage-chart")
    ostergotland = country.by_name("Region Östergötland")
    share = len(expected[ostergotland.care_giver] & set(range(1, 12))) / 11
    assert shares["Region Östergötland"] == f"{round(share * 100)} %"
    heading = browser.find_element(By.CSS_SELECTOR, f"tr[data-hsa='{ostergotland.care_giver}'] th")
    assert heading.text == "Region Östergötland"  # by name, the HSA-id on hover
    assert heading.get_attribute("title") == ostergotland.care_giver
    consumers = len(country.organisations) - len(expected)
    assert f"{consumers} consume only" in browser.find_element(
        By.CSS_SELECTOR, "[data-testid=coverage-summary]").text
    screenshot("coverage")

    Select(browser.find_element(By.ID, "f-kind")).select_by_value("region")
    regions = {o.care_giver for o in country.of_kind(Kind.REGION)} & set(expected)
    wait.until(lambda b: set(matrix(b)) == regions)
    screenshot("coverage-regions")
    assert_quiet_console(browser)


def test_searches_per_month_and_per_1000_inhabitants(
    browser: webdriver.Chrome, nation: Nation, searches: dict[str, int], screenshot: Any
) -> None:
    country = nation.source.nation
    ostergotland, motala = country.by_name("Region Östergötland"), country.by_name("Motala kommun")
    month = f"{datetime.now(UTC):%Y-%m}"
    wait = open_page(browser, nation)
    wait.until(lambda b: figures(b, "searches-per-month").get(month) == str(REGION_READS + TOWN_READS))
    assert set(figures(browser, "searches-per-month").values()) <= {"0", str(REGION_READS + TOWN_READS)}

    regions = figures(browser, "per-1000-regions")
    assert len(regions) == 21
    assert regions["Region Östergötland"] == f"{REGION_READS * 1000 / ostergotland.inhabitants:.3g}"
    assert next(iter(regions)) == "Region Östergötland"  # the only region with searches, sorted first
    assert "0" in browser.find_element(By.CSS_SELECTOR, "[data-testid=region-median]").text
    screenshot("searches-per-month-and-per-1000-regions")

    Select(browser.find_element(By.ID, "f-county")).select_by_value(ostergotland.county)
    wait.until(lambda b: len(figures(b, "per-1000-municipalities")) == len(
        country.municipalities_in(ostergotland.county)))
    towns = figures(browser, "per-1000-municipalities")
    inhabitants = modelled_inhabitants(country, motala)
    assert towns["Motala kommun"] == f"{TOWN_READS * 1000 / inhabitants:.3g}"
    assert next(iter(towns)) == "Motala kommun"
    # The same month's searches, now only those of care givers in Östergötland: all of them.
    assert figures(browser, "searches-per-month")[month] == str(REGION_READS + TOWN_READS)
    assert "not SCB statistics" in browser.find_element(By.CSS_SELECTOR, "[data-testid=footnote]").text
    screenshot("per-1000-municipalities-ostergotland")

    Select(browser.find_element(By.ID, "f-county")).select_by_value("01")  # Stockholm: none of them
    wait.until(lambda b: figures(b, "searches-per-month").get(month) == "0")
    browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-testid=status]"), "Shown:"))
    assert_quiet_console(browser)


def test_a_clinician_is_told_the_view_is_not_theirs(browser: webdriver.Chrome, nation: Nation) -> None:
    wait = open_page(browser, nation, Role.CLINICIAN)
    alert = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#session [role=alert]")))
    assert "operator or admin" in alert.text
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=coverage-matrix]")
