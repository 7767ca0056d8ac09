"""The dashboard in a real browser: every page loads, signing in works, and
cancel / requeue / pause / drain show their effect without a reload (the
page's JavaScript state survives and its URL stays); a POST without the CSRF
token is refused. Photographs each page (see SHOTS)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from corral.queue import JobState, Queue, WorkerState
from tests._dashboard import PASSWORD, Seeded

# Where the screenshots go: a scratch folder, so `make test` leaves the tree
# as it was; `make dashboard-screenshots` points it at docs/dashboard/.
SHOTS = Path(
    os.environ.get("CORRAL_SCREENSHOTS_DIR")
    or Path(tempfile.gettempdir()) / "corral-dashboard-screenshots"
)
PAGES = {
    "overview": "/",
    "jobs": "/jobs",
    "workers": "/workers",
    "pools": "/pools",
    "schedules": "/schedules",
    "dispatch": "/dispatch",
    "audit": "/audit",
}


def sign_in(driver: webdriver.Chrome, base: str, then: str = "/") -> None:
    driver.get(f"{base}/login?next={then}")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    click(driver, "sign-in")
    WebDriverWait(driver, 10).until(lambda d: "signed in as" in d.page_source)


def mark_page(driver: webdriver.Chrome) -> str:
    """Tag the loaded document; a reload or navigation would lose the tag."""
    driver.execute_script("window.__corralMark = 'same-page';")
    return str(driver.current_url)


def same_page(driver: webdriver.Chrome, url_before: str) -> None:
    assert driver.execute_script("return window.__corralMark") == "same-page", "the page reloaded"
    assert driver.current_url == url_before


def wait_for(driver: webdriver.Chrome, css: str, text: str) -> None:
    """Until the element at `css` says `text` (the live fragment swapped in).
    Read in the page in one step: htmx replaces the fragment every 2 s, so an
    element found a moment ago may be gone."""
    script = "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;"
    WebDriverWait(driver, 10).until(
        lambda d: text in (d.execute_script(script, css) or ""),
        message=f"{css} never showed {text!r}",
    )


def click(driver: webdriver.Chrome, element_id: str) -> None:
    """Click the element with this id, finding it again if the live fragment
    was swapped between finding and clicking it."""

    def clicked(d: webdriver.Chrome) -> bool:
        d.find_element(By.ID, element_id).click()
        return True

    WebDriverWait(driver, 10, ignored_exceptions=[StaleElementReferenceException]).until(
        clicked, message=f"#{element_id} could not be clicked"
    )


def test_every_page_loads_and_is_photographed(
    fresh_browser: webdriver.Chrome, url: str, seeded: Seeded
) -> None:
    driver = fresh_browser
    # read-only first: the sign-in banner, no action buttons
    driver.get(url + "/jobs")
    assert driver.find_element(By.ID, "sign-in-banner").is_displayed()
    assert not driver.find_elements(By.CSS_SELECTOR, "button[id^=cancel-]")
    sign_in(driver, url)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for name, path in PAGES.items():
        driver.get(url + path)
        assert driver.find_element(By.ID, f"nav-{name}").get_attribute("class") == "here"
        assert driver.find_element(By.ID, "live").is_displayed()
        driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.get(f"{url}/jobs/{seeded.dead['mail'][0]}")
    assert "smtp timeout" in driver.find_element(By.ID, "job-error").text
    driver.save_screenshot(str(SHOTS / "job.png"))


def test_cancel_then_requeue_without_a_reload(
    fresh_browser: webdriver.Chrome, url: str, seeded: Seeded, database_url: str
) -> None:
    driver = fresh_browser
    job = seeded.pending[0]
    sign_in(driver, url, "/jobs?queue=mail")
    before = mark_page(driver)
    click(driver, f"cancel-{job}")
    wait_for(driver, f'tr[data-job="{job}"] td.state', "cancelled")
    wait_for(driver, "#flash", f"job {job} cancelled")
    same_page(driver, before)
    click(driver, f"requeue-{job}")
    wait_for(driver, f'tr[data-job="{job}"] td.state', "pending")
    same_page(driver, before)
    with Queue.connect(database_url) as q:
        assert q.get_job(job).state is JobState.PENDING


def test_pause_a_queue_with_a_reason_without_a_reload(
    fresh_browser: webdriver.Chrome, url: str, database_url: str
) -> None:
    driver = fresh_browser
    sign_in(driver, url, "/dispatch")
    before = mark_page(driver)
    driver.find_element(By.ID, "pause-queue").send_keys("mail")
    driver.find_element(By.ID, "pause-reason").send_keys("provider outage")
    click(driver, "pause")
    wait_for(driver, 'tr[data-queue="mail"]', "provider outage")
    wait_for(driver, 'tr[data-queue="mail"] td.dstate', "paused")
    same_page(driver, before)
    click(driver, "resume-q-mail")
    wait_for(driver, 'tr[data-queue="mail"] td.dstate', "running")
    same_page(driver, before)
    with Queue.connect(database_url) as q:
        assert not any(d.paused for d in q.dispatch_status("mail"))


def test_drain_a_worker_without_a_reload(
    fresh_browser: webdriver.Chrome, url: str, seeded: Seeded, database_url: str
) -> None:
    driver = fresh_browser
    sign_in(driver, url, "/workers")
    before = mark_page(driver)
    click(driver, f"drain-{seeded.worker_id}")
    wait_for(driver, f'tr[data-worker="{seeded.worker_id}"] td.wstate', "draining")
    same_page(driver, before)
    with Queue.connect(database_url) as q:
        assert q.get_worker(seeded.worker_id).state is WorkerState.DRAINING


def test_a_change_made_elsewhere_appears_by_polling(
    fresh_browser: webdriver.Chrome, url: str, seeded: Seeded, database_url: str
) -> None:
    driver = fresh_browser
    driver.get(url + "/jobs?queue=mail")
    before = mark_page(driver)
    with Queue.connect(database_url) as q:
        q.cancel(seeded.pending[1])
    wait_for(driver, f'tr[data-job="{seeded.pending[1]}"] td.state', "cancelled")
    same_page(driver, before)


def test_a_post_without_the_csrf_token_is_refused(
    fresh_browser: webdriver.Chrome, url: str, seeded: Seeded, database_url: str
) -> None:
    driver = fresh_browser
    sign_in(driver, url, "/jobs")
    job = seeded.pending[2]
    status = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(arguments[0], {method: 'POST', credentials: 'same-origin'})
          .then(r => done(r.status), e => done(String(e)));""",
        f"{url}/jobs/{job}/cancel",
    )
    assert status == 403
    with Queue.connect(database_url) as q:
        assert q.get_job(job).state is JobState.PENDING
