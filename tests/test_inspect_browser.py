"""The inspector in a real browser: headless Chromium, driven by Selenium, against
``paysession inspect`` started in a subprocess over a database the demo made.

Chromium and its driver are Debian's ``chromium`` and ``chromium-driver`` (``.ci/run``
installs them). Without them the tests skip, except under ``CI=true``, where they fail.
Screenshots go to the test's directory; with ``PAYSESSION_SCREENSHOTS=DIR`` they are
also copied there (``docs/images/inspect-session.png`` in the repository is made so).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paysession import PaymentSessions
from paysession.store import SqliteStore

from .helpers import StepClock, initiated, inspector_running

# A browser and a server per test: in the full run, not the quick -m "not slow" loop.
pytestmark = pytest.mark.slow

webdriver = pytest.importorskip("selenium.webdriver")

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
# What a headless Chromium needs here: no sandbox as root, and none of its own traffic
# (updates, sync, lookups of Google's hosts), which a closed network refuses.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1500",
)


def _browser_or_skip() -> tuple[str, str]:
    if CHROMIUM is None or DRIVER is None:
        message = (
            "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM, DRIVER


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _browser_or_skip()
    path = tmp_path_factory.mktemp("demo") / "paysession-demo.db"
    done = subprocess.run(
        [sys.executable, "-m", "paysession", "demo", "--db", str(path), "--carts", "40"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return path


@pytest.fixture(scope="module")
def site(demo_db: Path) -> Iterator[str]:
    with inspector_running(demo_db) as (_, url):
        yield url


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium, driver_path = _browser_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    wanted = os.environ.get("PAYSESSION_SCREENSHOTS")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(wanted) / name)
    return path


def _no_alert(driver: Any) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 (the read is the check)


def test_filter_then_open_a_session_and_see_its_path_and_trail(
    browser: Any, site: str, tmp_path: Path
) -> None:
    browser.get(site + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")
    assert len(rows) >= 40  # the demo's 40 carts, a session or more each
    assert browser.find_elements(By.CSS_SELECTOR, "svg.bars a.bar")
    _shot(browser, tmp_path, "inspect-sessions.png")

    Select(browser.find_element(By.NAME, "status")).select_by_value("authorized")
    browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda d: "status=authorized" in d.current_url)
    statuses = {
        cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#sessions tbody .status")
    }
    assert statuses == {"authorized"}

    first = browser.find_element(By.CSS_SELECTOR, "#sessions tbody a[href^='/sessions/']")
    session_id = first.text
    first.click()
    WebDriverWait(browser, 10).until(lambda d: "/sessions/" in d.current_url)
    assert session_id in browser.find_element(By.TAG_NAME, "h1").text
    current = browser.find_element(By.CSS_SELECTOR, "#diagram g.status.current")
    assert current.get_attribute("data-status") == "authorized"
    assert browser.find_elements(By.CSS_SELECTOR, "#diagram path.move.taken")
    verification = browser.find_element(By.ID, "verification")
    assert verification.text.startswith("Trail verified:")
    trail = browser.find_elements(By.CSS_SELECTOR, "#trail tbody tr")
    assert len(trail) >= 3
    assert trail[0].find_elements(By.TAG_NAME, "td")[2].text == "create"
    _shot(browser, tmp_path, "inspect-session.png")
    _no_alert(browser)


def test_the_lifecycle_and_anomalies_pages_render(browser: Any, site: str) -> None:
    browser.get(site + "/lifecycle")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#diagram g.status")) == 5
    assert browser.find_elements(By.CSS_SELECTOR, "#transitions tbody tr")
    browser.get(site + "/anomalies")
    assert browser.find_element(By.ID, "anomalies").is_displayed()


def test_hostile_strings_stay_text_and_the_activity_page_refreshes(
    browser: Any, tmp_path: Path
) -> None:
    path = tmp_path / "hostile.db"
    writer = SqliteStore(path)
    sessions = PaymentSessions(writer, clock=StepClock())
    payload = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    session_id = initiated(sessions, "cart_h", actor=payload)
    try:
        with inspector_running(path) as (_, url):
            browser.get(f"{url}/sessions/{session_id}")
            _no_alert(browser)
            actors = [
                row.find_elements(By.TAG_NAME, "td")[4].text
                for row in browser.find_elements(By.CSS_SELECTOR, "#trail tbody tr")
            ]
            assert payload in actors

            browser.get(url + "/activity")
            before = len(browser.find_elements(By.CSS_SELECTOR, "#activity tbody tr"))
            sessions.fire(session_id, "cancel", actor=payload, reason="live")
            WebDriverWait(browser, 15).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, "#activity tbody tr.fresh")
            )
            fresh = browser.find_element(By.CSS_SELECTOR, "#activity tbody tr.fresh")
            cells = [cell.text for cell in fresh.find_elements(By.TAG_NAME, "td")]
            assert cells[1:4] == [session_id, "2", "cancel"]
            assert cells[5] == payload
            assert len(browser.find_elements(By.CSS_SELECTOR, "#activity tbody tr")) == before + 1
            assert browser.find_element(By.ID, "live").text == "live"
            _no_alert(browser)
    finally:
        writer.close()
