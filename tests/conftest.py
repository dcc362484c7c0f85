"""Browser fixtures: real headless Chromium (Debian's package) driven by Selenium, screenshots.

`make test` installs chromium and chromium-driver when they are missing (see the Makefile).
Screenshots go to test-artifacts/screenshots/ and are listed at the end of the test run.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
_taken: list[Path] = []


def _executable(variable: str, *candidates: str) -> str:
    for candidate in (os.environ.get(variable), *candidates):
        if candidate and (found := shutil.which(candidate)):
            return found
    raise pytest.UsageError(f"{candidates[0]} is not installed: run `make browser` (or set {variable})")


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the session (each test signs in afresh: sessionStorage)."""
    options = webdriver.ChromeOptions()
    options.binary_location = _executable("NPO_CHROMIUM", "/usr/lib/chromium/chromium", "chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1000", "--lang=sv-SE", "--no-first-run"):
        options.add_argument(argument)
    service = Service(_executable("NPO_CHROMEDRIVER", "chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshot(browser: webdriver.Chrome, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """``screenshot("overview")``: save the page as PNG, listed in the run's summary."""

    def take(name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^a-zA-Z0-9_-]+", "-", f"{request.node.name}-{name}")
        path = SCREENSHOTS / f"{stem}.png"
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, max(1000, min(int(height) + 40, 4000)))
        browser.save_screenshot(str(path))
        browser.set_window_size(1280, 1000)
        _taken.append(path)
        return path

    return take


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _taken:
        terminalreporter.section("screenshots of the web views")
        for path in _taken:
            terminalreporter.write_line(f"{path} ({path.stat().st_size:,} bytes)")
