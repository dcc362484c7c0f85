"""The clinician's web view in real headless Chromium against the whole running nation.

Sign in by link, find a patient, read the overview as it streams in (withheld producers
reported), register relation, consent and emergency access through the forms, see the
"blocked information exists" notice, and the live notice when a producer announces new
information. Screenshots of each view go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from npo_bench.nation import Nation, running_nation
from npo_deploy.tokens import DEMO_GIVER
from npo_platform.categories import by_number
from npo_platform.identity import Role
from npo_simulator.organisations import Organisation

pytestmark = pytest.mark.integration
WAIT_S = 20
# Refusals the page asks for on purpose show as network errors in the console; nothing else may.
EXPECTED_REFUSALS = re.compile(
    r"/v1/(overview/stream|emergency-accesses) - Failed to load resource: "
    r"the server responded with a status of (403|422)")
Screenshot = Callable[[str], Path]


@pytest.fixture(scope="module")
def nation(kafka_bootstrap_servers: str, database_url: str, browser: WebDriver,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    with running_nation(kafka_bootstrap_servers, database_url,
                        tmp_path_factory.mktemp("web-clinician")) as running:
        yield running
        # Leave the page first: its open live subscription would hold the servers' shutdown.
        browser.get("about:blank")


# ---- page helpers ---------------------------------------------------------------------------

def css(browser: WebDriver, selector: str) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, selector)


def tid(name: str) -> str:
    return f"[data-testid={name}]"


def wait(browser: WebDriver, condition: Callable[[WebDriver], Any], message: str) -> Any:
    # The page re-renders parts as answers arrive: an element may go stale between looks.
    return WebDriverWait(browser, WAIT_S, ignored_exceptions=(StaleElementReferenceException,)).until(
        condition, message)


def visible_text(browser: WebDriver, selector: str) -> str:
    return " ".join(e.text for e in css(browser, selector))


def sign_in(browser: WebDriver, nation: Nation) -> None:
    browser.get("about:blank")  # a fragment-only change would not reload the page
    console(browser)  # start each test with an empty console log
    browser.get(f"{nation.query}/ui/#token={nation.token(Role.CLINICIAN)}")
    wait(browser, lambda d: css(d, "#pnr"), "the patient search did not appear")
    assert "Dr Lisa Lind" in visible_text(browser, tid("who"))
    assert "token=" not in browser.current_url


def find(browser: WebDriver, patient: str) -> None:
    field = css(browser, "#pnr")[0]
    field.clear()
    field.send_keys(f"{patient[:8]}-{patient[8:]}")
    css(browser, f"{tid('find-form')} button")[0].click()
    wait(browser, lambda d: css(d, tid("standing-table")), "the patient's standing did not show")
    assert f"{patient[:8]}-{patient[8:]}" in visible_text(browser, tid("patient-heading"))


def runs(browser: WebDriver) -> int:
    return int(css(browser, tid("overview"))[0].get_attribute("data-runs") or 0)


def show_overview(browser: WebDriver) -> None:
    """Run the overview once and wait until its stream has ended (or was refused)."""
    before = runs(browser)
    css(browser, tid("show-overview"))[0].click()
    wait(browser, lambda d: runs(d) > before, "the overview did not finish")


def overview_until(browser: WebDriver, condition: Callable[[WebDriver], bool], message: str) -> None:
    """Re-run the overview until ``condition``: a consent change reaches the query service's
    decision cache through Kafka, so the first read after a change may still see the old one."""
    deadline = datetime.now(UTC) + timedelta(seconds=WAIT_S)
    while True:
        show_overview(browser)
        if condition(browser):
            return
        assert datetime.now(UTC) < deadline, message


def statuses(browser: WebDriver) -> list[tuple[str, str]]:
    """(status, text) of each producer row."""
    return [(row.get_attribute("data-status") or "", row.text)
            for row in css(browser, tid("producer-row"))]


def submit(browser: WebDriver, form: str) -> None:
    css(browser, f"{tid(form)} button[type=submit]")[0].click()


def in_force(browser: WebDriver, what: str) -> bool:
    rows = css(browser, tid(f"standing-{what}"))
    return bool(rows) and rows[0].get_attribute("data-state") == "in-force"


def console(browser: WebDriver) -> list[dict[str, Any]]:
    """The browser console's entries since the last call (reading them empties the log)."""
    entries: list[dict[str, Any]] = browser.get_log("browser")  # type: ignore[no-untyped-call]
    return entries


def assert_console_clean(browser: WebDriver) -> None:
    severe = [e for e in console(browser) if e["level"] == "SEVERE"
              and not (e.get("source") == "network" and EXPECTED_REFUSALS.search(e["message"]))]
    assert severe == [], severe


# ---- nation helpers ---------------------------------------------------------------------------

def other_givers(nation: Nation, patient: str) -> list[Organisation]:
    return sorted((o for o in nation.producers_of(patient) if o.care_giver != DEMO_GIVER),
                  key=lambda o: o.logical_address)


def patients_with_other_givers(nation: Nation, count: int) -> list[str]:
    found = []
    for person in nation.source.people:
        if person.patient_id != nation.patient and len(
                {o.care_giver for o in other_givers(nation, person.patient_id)}) >= 2:
            found.append(person.patient_id)
            if len(found) == count:
                return found
    raise AssertionError("too few patients with records at two other care givers")


def block(nation: Nation, patient: str, care_giver: str) -> None:
    patient_self = nation.headers(nation.patient_self(patient))  # the patient asks for it
    answer = httpx.post(f"{nation.consent}/v1/blocks", headers=patient_self,
                        json={"patient_id": patient, "care_giver": care_giver}, timeout=10)
    assert answer.status_code == 201, answer.text


def announce_new_information(nation: Nation, patient: str, org: Organisation) -> None:
    notes = by_number(min(org.publishes))  # a category the producer serves
    engagement = {
        "registeredResidentIdentification": patient, "serviceDomain": notes.service_domain,
        "categorization": notes.categorizations[0], "logicalAddress": org.logical_address,
        "businessObjectInstanceIdentifier": f"web-{uuid.uuid4().hex[:16]}",
        "sourceSystem": org.source_system, "dataController": org.care_giver,
        "mostRecentContent": datetime.now(UTC).strftime("%Y%m%d%H%M%S")}
    answer = httpx.post(f"{nation.index}/engagement-updates",
                        headers=nation.headers(nation.producer(org)),
                        json={"transactions": [{"engagement": engagement}]}, timeout=10)
    assert answer.status_code == 202, answer.text


def register_relation_and_consent(browser: WebDriver) -> None:
    submit(browser, "relation-form")
    wait(browser, lambda d: in_force(d, "relation"), "the relation was not registered")
    submit(browser, "consent-form")
    wait(browser, lambda d: in_force(d, "consent"), "the consent was not registered")


def assert_named(browser: WebDriver, nation: Nation, others: list[Organisation]) -> None:
    """Care givers, units and the reader by name, each name's HSA-id on hover (title)."""
    reading = css(browser, tid("reading-as"))[0]
    assert "Dr Lisa Lind" in reading.text
    assert "Vårdcentralen Östergötland" in reading.text
    assert "Region Östergötland" in reading.text
    assert {e.get_attribute("title") for e in reading.find_elements(By.CSS_SELECTOR, "[data-hsa]")} == {
        "SE2321000503-L001", "SE2321000503-VE001", DEMO_GIVER}
    assert "Vårdcentralen Östergötland" in visible_text(browser, "[data-testid=standing-table] caption")
    producers = {e.get_attribute("title"): e.text for e in css(browser, f"{tid('producer-name')} [data-hsa]")}
    assert any(producers.get(o.care_giver) == o.name for o in others), producers
    shown = css(browser, f"{tid('record-unit')} [data-hsa]")
    assert shown, "no record names where it was documented"
    for name in shown:
        hsa = str(name.get_attribute("title"))
        assert name.text == (nation.name_of(hsa) or hsa), hsa
    assert any(nation.name_of(str(n.get_attribute("title"))) for n in shown), "every record by its code"


# ---- tests ------------------------------------------------------------------------------------

def test_a_malformed_personnummer_is_explained_before_anything_is_asked(
    nation: Nation, browser: WebDriver
) -> None:
    sign_in(browser, nation)
    field = css(browser, "#pnr")[0]
    field.send_keys("19121212-1213")  # wrong check digit
    css(browser, f"{tid('find-form')} button")[0].click()
    error = wait(browser, lambda d: css(d, tid("pnr-error")), "no message for a bad number")
    assert "check digit" in error[0].text
    assert field.get_attribute("aria-invalid") == "true"
    assert not css(browser, tid("standing"))
    assert_console_clean(browser)


def test_the_overview_streams_in_as_consent_allows_and_tells_that_blocked_information_exists(
    nation: Nation, browser: WebDriver, screenshot: Screenshot
) -> None:
    others = other_givers(nation, nation.patient)
    assert len({o.care_giver for o in others}) >= 2, "the demo patient needs two other care givers"
    sign_in(browser, nation)
    find(browser, nation.patient)
    assert not in_force(browser, "relation")
    assert not in_force(browser, "consent")
    assert "need a patient relation" in visible_text(browser, tid("live-state"))

    show_overview(browser)  # without a relation nothing, the own care giver's neither
    notice = wait(browser, lambda d: css(d, tid("no-relation-notice")),
                  "the refusal did not say what to do")
    assert "register a patient relation" in notice[0].text
    assert statuses(browser) == []  # not even which producers hold something
    screenshot("refused-without-relation")

    register_relation_and_consent(browser)
    overview_until(browser, lambda d: any(s == "DataFromSource" for s, _ in statuses(d)),
                   "no producer answered after relation and consent")
    answered = [text for status, text in statuses(browser) if status == "DataFromSource"]
    assert any(o.logical_address in text for o in others for text in answered)
    assert_named(browser, nation, others)
    records = css(browser, tid("record"))
    assert records, "no records listed"
    groups = [g.get_attribute("data-category") for g in css(browser, tid("record-group"))]
    assert groups
    assert len(groups) == len(set(groups))
    summary = css(browser, tid("summary"))[0]
    assert summary.get_attribute("data-outcome") in {"allowed", "partial"}
    assert not css(browser, tid("blocked-notice"))
    screenshot("streamed-with-consent")

    blocked = others[0]
    block(nation, nation.patient, blocked.care_giver)
    overview_until(browser, lambda d: bool(css(d, tid("blocked-notice"))),
                   "the blocked-information notice did not appear")
    notice = css(browser, tid("blocked-notice"))[0].text
    assert "Blocked information exists" in notice
    page = visible_text(browser, tid("overview"))
    assert blocked.logical_address not in page
    assert blocked.care_giver not in page
    units = {r.care_unit for r in nation.producers_of(nation.patient)[blocked]}
    assert not any(unit in page for unit in units)
    assert blocked.name not in page  # not by name either
    assert not any(str(nation.name_of(unit)) in page for unit in units)
    [row] = [text for _, text in statuses(browser) if "Not shown (blocked)" in text]
    assert row.startswith("Not shown Not shown (blocked)")  # no category, no producer
    screenshot("blocked-information-exists")
    assert_console_clean(browser)


def test_emergency_access_is_refused_without_a_reason_and_opens_with_one(
    nation: Nation, browser: WebDriver, screenshot: Screenshot
) -> None:
    patient = patients_with_other_givers(nation, 1)[0]
    sign_in(browser, nation)
    find(browser, patient)
    submit(browser, "relation-form")  # emergency access replaces consent, not the relation
    wait(browser, lambda d: in_force(d, "relation"), "the relation was not registered")

    submit(browser, "emergency-form")
    refused = wait(browser, lambda d: css(d, f"{tid('emergency-form')} {tid('problem')}"),
                   "no error for an emergency access without a reason")
    assert "emergency.reason_required" in refused[0].text
    assert not in_force(browser, "emergency")
    screenshot("emergency-without-reason")

    css(browser, "#emergency-reason")[0].send_keys("Unconscious after a fall, suspected bleeding")
    submit(browser, "emergency-form")
    wait(browser, lambda d: in_force(d, "emergency"), "the emergency access did not open")
    assert not css(browser, f"{tid('emergency-form')} {tid('problem')}")
    overview_until(browser, lambda d: any(s == "DataFromSource" for s, _ in statuses(d)),
                   "emergency access did not open other care givers' information")
    assert css(browser, tid("record"))
    screenshot("emergency-access-open")
    assert_console_clean(browser)


def test_new_information_for_a_patient_in_care_is_announced_live(
    nation: Nation, browser: WebDriver, screenshot: Screenshot
) -> None:
    patient = patients_with_other_givers(nation, 2)[1]
    sign_in(browser, nation)
    find(browser, patient)
    register_relation_and_consent(browser)
    wait(browser, lambda d: css(d, f"{tid('live-state')}[data-state=subscribed]"),
         "the live subscription did not start")
    show_overview(browser)
    before = len(css(browser, tid("producer-row")))
    assert not css(browser, tid("live-notice"))

    announce_new_information(nation, patient, other_givers(nation, patient)[0])
    notice = wait(browser, lambda d: css(d, tid("live-notice")), "no live notice arrived")
    assert "New information for this patient — refresh" in notice[0].text
    region = css(browser, tid("live-region"))[0]
    assert region.get_attribute("aria-live") == "polite"
    screenshot("live-notice")

    done = runs(browser)
    css(browser, tid("live-refresh"))[0].click()
    wait(browser, lambda d: runs(d) > done, "the refresh did not re-run the overview")
    assert not css(browser, tid("live-notice"))
    assert len(css(browser, tid("producer-row"))) >= before
    assert css(browser, tid("summary"))
    assert_console_clean(browser)
