"""Browser tier: the dashboard in headless Chromium (Debian's `chromium`,
driven by Selenium through Debian's `chromium-driver`), against a real
PostgreSQL (the `database_url` fixture) and the real aiohttp app.

A browser that cannot start FAILS the test with the reason (install with
`apt-get install chromium chromium-driver`; .ci/run does): never a skip.
The fixtures `seeded` and `url` (the dashboard serving a seeded queue) come
from `tests/_dashboard.py`, shared with the integration tier.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

from tests._dashboard import seeded, url  # noqa: F401 (fixtures, shared with tests/integration)

CHROMIUM = os.environ.get("CORRAL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CORRAL_CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.exists(path) or shutil.which(path)):
            pytest.fail(
                f"{path} is missing: install Debian's {package} "
                f"(apt-get install chromium chromium-driver), or set "
                f"CORRAL_CHROMIUM / CORRAL_CHROMEDRIVER",
                pytrace=False,
            )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI's container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        pytest.fail(f"headless Chromium did not start: {exc.msg}", pytrace=False)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def fresh_browser(browser: webdriver.Chrome) -> webdriver.Chrome:
    """The session's browser with no cookies left from the previous test."""
    browser.delete_all_cookies()
    return browser
