"""Every route of the dashboard (corral.dashboard) over HTTP against real
PostgreSQL: status codes, what each page shows, what each action changes in
the queue, and the refusals (CSRF, read-only, not signed in, wrong password).
The server is the real aiohttp app on a local port (tests/_dashboard.py)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from corral.queue import JobState, Queue, ScheduleSpec, WorkerState
from tests._dashboard import PASSWORD, Seeded, csrf_of, serve, settings

PAGES = ["/", "/jobs", "/workers", "/pools", "/schedules", "/dispatch", "/audit", "/login"]
HX = {"HX-Request": "true"}


def sign_in(base: str) -> requests.Session:
    s = requests.Session()
    token = csrf_of(s.get(f"{base}/login").text)
    r = s.post(f"{base}/login", data={"csrf": token, "user": "admin", "password": PASSWORD})
    assert r.status_code == 200 and "signed in as" in r.text
    return s


def act(s: requests.Session, base: str, path: str, **data: str) -> requests.Response:
    """POST an action the way htmx does, with the CSRF token of the page."""
    token = csrf_of(s.get(f"{base}/").text)
    return s.post(f"{base}{path}", data={"csrf": token, **data}, headers=HX)


def test_every_page_answers_and_a_fragment_is_only_the_live_part(url: str, seeded: Seeded) -> None:
    for path in PAGES:
        r = requests.get(url + path)
        assert r.status_code == 200, (path, r.text[:500])
        assert "<html" in r.text
    r = requests.get(f"{url}/jobs/{seeded.pending[0]}")
    assert r.status_code == 200
    assert requests.get(f"{url}/healthz").text == "ok\n"
    fragment = requests.get(f"{url}/jobs", headers=HX)
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and 'id="jobs"' in fragment.text


def test_overview_shows_counts_per_queue_and_state_and_the_charts(url: str) -> None:
    html = requests.get(url + "/").text
    assert 'data-queue="mail"' in html and 'data-queue="reports"' in html
    # mail: 3 pending, 2 dead; the row lists counts in JobState order
    row = html.split('data-queue="mail"')[1].split("</tr>")[0]
    counts = [int(c) for c in row.split('class="num">')[1:] for c in [c.split("<")[0]]]
    states = ["scheduled", "pending", "running", "completed", "dead"]  # dead: last 24 h
    assert counts[states.index("pending")] == 3
    assert counts[states.index("dead")] == 2
    assert "Throughput per minute" in html and "Jobs waiting" in html
    assert "oldest" in html and "no queue is paused" in html


def test_job_browser_filters_and_pages(url: str, seeded: Seeded, database_url: str) -> None:
    dead_mail = requests.get(url + "/jobs", params={"state": "dead", "queue": "mail"}).text
    for job_id in seeded.dead["mail"]:
        assert f'data-job="{job_id}"' in dead_mail
    for job_id in seeded.dead["reports"] + seeded.pending:
        assert f'data-job="{job_id}"' not in dead_mail
    by_error = requests.get(url + "/jobs", params={"error": "TEMPLATE"}).text
    assert all(f'data-job="{i}"' in by_error for i in seeded.dead["reports"])
    assert not any(f'data-job="{i}"' in by_error for i in seeded.dead["mail"])
    by_kind = requests.get(url + "/jobs", params={"kind": "email"}).text
    assert by_kind.count("data-job=") == 3
    # pagination: 60 more jobs, newest first, keyset by id
    with Queue.connect(database_url) as q:
        ids = [q.enqueue("bulk", {"n": i}, queue="bulk") for i in range(60)]
    first = requests.get(url + "/jobs", params={"queue": "bulk"}).text
    assert f'data-job="{ids[-1]}"' in first and f'data-job="{ids[9]}"' not in first
    assert first.count("data-job=") == 50
    older = first.split('id="older"')[0].rsplit('href="', 1)[1].split('"')[0]
    assert "before=" in older
    second = requests.get(url + older.replace("&amp;", "&")).text
    assert second.count("data-job=") == 10
    assert f'data-job="{ids[0]}"' in second and 'id="older"' not in second


def test_a_bad_filter_is_a_400_naming_the_field(url: str) -> None:
    r = requests.get(url + "/jobs", params={"state": "finished"})
    assert r.status_code == 400
    assert "state &#39;finished&#39; is not a job state" in r.text


def test_job_page_shows_payload_error_attempts_and_worker(url: str, seeded: Seeded) -> None:
    html = requests.get(f"{url}/jobs/{seeded.dead['mail'][0]}").text
    assert "smtp timeout" in html and "&#34;report&#34;: &#34;mail&#34;" in html
    assert "1 of 1" in html and seeded.worker_name in html
    assert requests.get(f"{url}/jobs/999999").status_code == 404


def test_workers_are_grouped_by_region_and_pool_with_regions_counted(
    url: str, seeded: Seeded
) -> None:
    html = requests.get(url + "/workers").text
    assert 'data-region="eu"' in html and "<h4>fast</h4>" in html
    assert seeded.worker_name in html and "0/4" in html
    assert "1 live" in html


def test_pools_page_says_when_no_cluster_is_reachable(
    database_url: str, seeded: Seeded, tmp_path: Path
) -> None:
    with serve(settings(database_url)) as base:
        html = requests.get(base + "/pools").text
        assert 'id="no-cluster"' in html and "no Kubernetes cluster configured" in html

    def unreachable() -> object:
        from corral.kube import Kube

        config = tmp_path / "kubeconfig"
        config.write_text(
            "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
            "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
            "current-context: x\n"
        )
        return Kube.from_environment(str(config))

    with serve(settings(database_url, kube=unreachable)) as base:
        html = requests.get(base + "/pools").text
        assert "the Kubernetes API cannot be read" in html
        assert requests.get(base + "/jobs").status_code == 200  # the rest works


def test_read_only_without_a_password(database_url: str, seeded: Seeded) -> None:
    with serve(settings(database_url, password=None)) as base:
        s = requests.Session()
        page = s.get(base + "/jobs").text
        assert 'id="read-only-banner"' in page and "CORRAL_DASHBOARD_PASSWORD" in page
        assert "/cancel" not in page  # no action buttons
        token = csrf_of(s.get(base + "/login").text)
        r = s.post(f"{base}/jobs/{seeded.pending[0]}/cancel", data={"csrf": token}, headers=HX)
        assert r.status_code == 403 and "read-only" in r.text
        r = s.post(base + "/login", data={"csrf": token, "user": "admin", "password": ""})
        assert r.status_code == 403
    with Queue.connect(database_url) as q:
        assert q.get_job(seeded.pending[0]).state is JobState.PENDING


def test_actions_need_sign_in_and_the_right_password(
    url: str, seeded: Seeded, database_url: str
) -> None:
    s = requests.Session()
    r = act(s, url, f"/jobs/{seeded.pending[0]}/cancel")
    assert r.status_code == 403 and "sign in" in r.text
    token = csrf_of(s.get(url + "/login").text)
    r = s.post(url + "/login", data={"csrf": token, "user": "admin", "password": "wrong"})
    assert r.status_code == 403 and "wrong user or password" in r.text
    r = s.post(url + "/login", data={"csrf": token, "user": "root", "password": PASSWORD})
    assert r.status_code == 403
    with Queue.connect(database_url) as q:
        assert q.get_job(seeded.pending[0]).state is JobState.PENDING


def test_session_cookie_is_httponly_and_strict(url: str) -> None:
    s = requests.Session()
    token = csrf_of(s.get(url + "/login").text)
    r = s.post(
        url + "/login",
        data={"csrf": token, "user": "admin", "password": PASSWORD},
        allow_redirects=False,
    )
    assert r.status_code == 303
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie


def test_csrf_missing_or_foreign_is_refused_and_changes_nothing(
    url: str, seeded: Seeded, database_url: str
) -> None:
    s = sign_in(url)
    job = seeded.pending[0]
    r = s.post(f"{url}/jobs/{job}/cancel", headers=HX)
    assert r.status_code == 403 and "CSRF token is missing" in r.text
    other = requests.Session()
    foreign = csrf_of(other.get(url + "/login").text)  # another session's token
    r = s.post(f"{url}/jobs/{job}/cancel", data={"csrf": foreign}, headers=HX)
    assert r.status_code == 403
    r = s.post(f"{url}/jobs/{job}/cancel", data={"csrf": foreign})  # without htmx: a page
    assert r.status_code == 403 and 'id="error-message"' in r.text
    with Queue.connect(database_url) as q:
        assert q.get_job(job).state is JobState.PENDING


def test_cancel_and_requeue_change_the_job(url: str, seeded: Seeded, database_url: str) -> None:
    s = sign_in(url)
    job = seeded.pending[0]
    r = act(s, url, f"/jobs/{job}/cancel")
    assert r.status_code == 200 and f"job {job} cancelled" in r.text
    assert r.headers["HX-Trigger"] == "corral-changed"
    with Queue.connect(database_url) as q:
        assert q.get_job(job).state is JobState.CANCELLED
    r = act(s, url, f"/jobs/{job}/cancel")
    assert r.status_code == 409 and "only scheduled or pending" in r.text
    r = act(s, url, f"/jobs/{job}/requeue")
    assert r.status_code == 200
    with Queue.connect(database_url) as q:
        assert q.get_job(job).state is JobState.PENDING
    # without htmx, an action redirects back to where it came from
    token = csrf_of(s.get(url + "/jobs").text)
    r = s.post(
        f"{url}/jobs/{job}/cancel",
        data={"csrf": token, "next": "/jobs?queue=mail"},
        allow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["Location"] == "/jobs?queue=mail"
    r = s.post(
        f"{url}/jobs/{job}/requeue",
        data={"csrf": token, "next": "//evil.example/"},
        allow_redirects=False,
    )
    assert r.headers["Location"] == "/"


def test_requeue_all_dead_for_a_filter(url: str, seeded: Seeded, database_url: str) -> None:
    s = sign_in(url)
    r = act(s, url, "/jobs/requeue-dead", queue="reports")
    assert r.status_code == 200 and "2 dead jobs requeued" in r.text
    with Queue.connect(database_url) as q:
        assert {q.get_job(i).state for i in seeded.dead["reports"]} == {JobState.PENDING}
        assert {q.get_job(i).state for i in seeded.dead["mail"]} == {JobState.DEAD}
    r = act(s, url, "/jobs/requeue-dead", error="SMTP")
    assert "2 dead jobs requeued" in r.text
    with Queue.connect(database_url) as q:
        assert {q.get_job(i).state for i in seeded.dead["mail"]} == {JobState.PENDING}
        (entry,) = q.audit(1, action="jobs.requeue_dead")
    assert (entry.target, entry.detail) == ("*", {"error": "SMTP", "count": 2})


def test_drain_and_remove_a_worker(url: str, seeded: Seeded, database_url: str) -> None:
    s = sign_in(url)
    r = act(s, url, f"/workers/{seeded.worker_id}/drain")
    assert r.status_code == 200 and "draining" in r.text
    with Queue.connect(database_url) as q:
        assert q.get_worker(seeded.worker_id).state is WorkerState.DRAINING
    r = act(s, url, f"/workers/{seeded.worker_id}/remove")
    assert r.status_code == 200
    with Queue.connect(database_url) as q:
        assert q.get_worker(seeded.worker_id).state is WorkerState.REMOVED
    assert act(s, url, "/workers/424242/drain").status_code == 404


def test_schedule_pause_resume_and_run_now(url: str, seeded: Seeded, database_url: str) -> None:
    s = sign_in(url)
    assert act(s, url, f"/schedules/{seeded.schedule}/pause").status_code == 200
    with Queue.connect(database_url) as q:
        assert q.get_schedule(seeded.schedule).paused
    assert "paused" in requests.get(url + "/schedules").text
    assert act(s, url, f"/schedules/{seeded.schedule}/resume").status_code == 200
    r = act(s, url, f"/schedules/{seeded.schedule}/run")
    assert r.status_code == 200 and "enqueued job" in r.text
    with Queue.connect(database_url) as q:
        assert not q.get_schedule(seeded.schedule).paused
        assert q.browse_jobs(kind="report")
    assert act(s, url, "/schedules/nope/pause").status_code == 404


def test_schedule_buttons_carry_the_name_as_one_path_segment(url: str, database_url: str) -> None:
    # Workers name schedules: a "/" in a name must not reach the path, or
    # "../dispatch"'s Pause (resolved by the client) pauses every queue.
    names = ["../dispatch", "reports/nightly", "50% off?#now"]
    with Queue.connect(database_url) as q:
        for name in names:
            q.create_schedule(ScheduleSpec(name, "report", every_s=3600))
    s = sign_in(url)
    page = s.get(url + "/schedules").text
    for name in names:
        row = page.split(f'data-schedule="{name}"')[1].split("</tr>")[0]
        found = re.search(r'action="(/schedules/[^"]+/pause)"', row)
        assert found, row
        r = act(s, url, found.group(1))
        assert r.status_code == 200 and f"schedule {name} paused" in r.text, r.text
    with Queue.connect(database_url) as q:
        assert all(q.get_schedule(name).paused for name in names)
        assert not any(d.paused for d in q.dispatch_status())
        assert {e.action for e in q.audit(10)} == {"schedule.pause"}


def test_dispatch_pause_with_a_reason_and_resume(url: str, database_url: str) -> None:
    s = sign_in(url)
    r = act(s, url, "/dispatch/pause", queue="mail", reason="smtp provider down")
    assert r.status_code == 200
    with Queue.connect(database_url) as q:
        (mail,) = q.dispatch_status("mail")
        assert mail.paused and mail.reason == "smtp provider down"
    assert "smtp provider down" in requests.get(url + "/").text
    act(s, url, "/dispatch/pause", queue="", reason="maintenance")
    with Queue.connect(database_url) as q:
        assert any(d.queue == "*" and d.paused for d in q.dispatch_status())
    act(s, url, "/dispatch/resume", queue="*")
    with Queue.connect(database_url) as q:
        assert not any(d.paused for d in q.dispatch_status())


def test_no_page_shows_the_database_password_tokens_or_credentials(
    url: str, seeded: Seeded, database_url: str
) -> None:
    password = conninfo_to_dict(database_url).get("password")
    assert password
    secrets = [password, seeded.spare_token, seeded.credential]
    s = sign_in(url)
    paths = [*PAGES, f"/jobs/{seeded.dead['mail'][0]}", f"/jobs/{seeded.pending[0]}"]
    for path in paths:
        for client, headers in ((s, {}), (s, HX), (requests, {})):
            body = client.get(url + path, headers=headers).text
            for secret in secrets:
                assert secret not in body, (path, "shows a secret")


def test_an_unreachable_database_is_a_503_without_its_password(database_url: str) -> None:
    wrong = make_conninfo(database_url, password="not-the-password-XYZ", port="1")
    with serve(settings(wrong)) as base:
        for path in ("/", "/jobs"):
            r = requests.get(base + path)
            assert r.status_code == 503 and "the database cannot be read" in r.text
            assert "not-the-password-XYZ" not in r.text


def test_every_action_is_recorded_in_the_audit_trail(
    url: str, seeded: Seeded, database_url: str
) -> None:
    s = sign_in(url)
    job = seeded.pending[0]
    act(s, url, f"/jobs/{job}/cancel")
    act(s, url, "/dispatch/pause", queue="mail", reason="smtp provider down")
    act(s, url, f"/workers/{seeded.worker_id}/drain")
    act(s, url, f"/jobs/{job}/cancel")  # refused (already cancelled): not recorded
    with Queue.connect(database_url) as q:
        entries = q.audit(limit=10)
    assert [(e.actor, e.action, e.target) for e in reversed(entries)] == [
        ("admin", "job.cancel", f"job:{job}"),
        ("admin", "dispatch.pause", "mail"),
        ("admin", "worker.drain", f"worker:{seeded.worker_id}"),
    ]
    assert entries[1].detail == {"reason": "smtp provider down"}
    page = requests.get(url + "/audit").text
    assert "worker.drain" in page and "dispatch.pause" in page


def test_overview_charts_draw_the_last_hour_from_the_counters(url: str, seeded: Seeded) -> None:
    html = requests.get(url + "/").text
    # the seed's 4 dead jobs were folded into the counters by the overview's rollup
    assert '<span class="key dead">dead 4</span>' in html
    assert 'data-series="completed"' in html and 'data-series="waiting"' in html


def test_sign_out_ends_the_session(url: str, seeded: Seeded) -> None:
    s = sign_in(url)
    token = csrf_of(s.get(url + "/").text)
    assert s.post(url + "/logout").status_code == 403  # CSRF applies here too
    r = s.post(url + "/logout", data={"csrf": token})
    assert r.status_code == 200 and "signed in as" not in r.text
    assert act(s, url, f"/jobs/{seeded.pending[0]}/cancel").status_code == 403


def test_a_new_password_ends_the_sessions_signed_before(database_url: str, seeded: Seeded) -> None:
    from dataclasses import replace

    with serve(settings(database_url)) as base:
        s = sign_in(base)  # with PASSWORD, which leaked
    config = settings(database_url)
    config = replace(config, auth=replace(config.auth, password="a-new-password"))
    with serve(config) as base:  # the same secret key, a new password
        assert "signed in as" not in s.get(base + "/").text
        r = act(s, base, f"/jobs/{seeded.pending[0]}/cancel")
        assert r.status_code == 403 and "sign in" in r.text


def test_secure_cookies_behind_https(database_url: str) -> None:
    from dataclasses import replace

    config = settings(database_url)
    config = replace(config, auth=replace(config.auth, secure_cookies=True))
    with serve(config) as base:
        r = requests.get(base + "/")
        assert "Secure" in r.headers["Set-Cookie"] and "HttpOnly" in r.headers["Set-Cookie"]
        assert r.headers["X-Frame-Options"] == "DENY"


def test_every_response_sends_the_security_headers(url: str, seeded: Seeded) -> None:
    s = requests.Session()
    responses = {
        "page": s.get(url + "/"),
        "not found": s.get(url + "/no-such-page"),
        "missing job": s.get(url + "/jobs/999999"),
        "bad filter": s.get(url + "/jobs", params={"state": "finished"}),
        "no csrf": s.post(f"{url}/jobs/{seeded.pending[0]}/cancel", headers=HX),
        "redirect": s.post(url + "/logout", data={"csrf": csrf_of(s.get(url + "/").text)},
                           allow_redirects=False),
        "static": s.get(url + "/static/dashboard.css"),
    }  # fmt: skip
    statuses = {name: r.status_code for name, r in responses.items()}
    assert statuses == {"page": 200, "not found": 404, "missing job": 404, "bad filter": 400,
                        "no csrf": 403, "redirect": 303, "static": 200}  # fmt: skip
    for name, r in responses.items():
        headers = (r.headers.get("X-Frame-Options"), r.headers.get("X-Content-Type-Options"),
                   r.headers.get("Referrer-Policy"))  # fmt: skip
        assert headers == ("DENY", "nosniff", "same-origin"), name


# Where a sign-in or an action sends the browser back to: `next`, as a link's
# query decodes it (/login?next=/%09/x is "/\t/x"). aiohttp's Location goes
# through yarl, which drops TAB, CR and LF; a browser reads "\\" as "/".
ELSEWHERE = ["/\t/x", "/\n/x", "/\\x", "//x", "https://x", "/\r/evil.example/fake-login"]


def signed_in_from(base: str, link: str, posted: str | None = None) -> requests.Response:
    """Follow `link` to the sign-in form and sign in with its `next` field (or
    `posted` instead); the answer, not followed."""
    s = requests.Session()
    form = s.get(base + link).text
    found = re.search(r'name="next" value="([^"]*)"', form)
    assert found, form
    value = html.unescape(found.group(1)) if posted is None else posted
    data = {"csrf": csrf_of(form), "user": "admin", "password": PASSWORD, "next": value}
    return s.post(f"{base}/login", data=data, allow_redirects=False)


@pytest.mark.parametrize("target", ELSEWHERE)
def test_after_sign_in_next_never_leads_to_another_site(
    url: str, seeded: Seeded, target: str
) -> None:
    # the link as an attacker would send it: /login?next=/%09/x
    link = f"/login?next={quote(target, safe='/:')}"
    for posted in (None, target):  # what the form carries, and the raw value posted
        r = signed_in_from(url, link, posted)
        assert r.status_code == 303 and r.headers["Location"] == "/", (posted, r.headers)
    s = sign_in(url)  # an action's way back, without htmx
    token = csrf_of(s.get(url + "/jobs").text)
    r = s.post(
        f"{url}/jobs/{seeded.pending[0]}/cancel",
        data={"csrf": token, "next": target},
        allow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["Location"] == "/", r.headers


def test_after_sign_in_next_keeps_a_path_of_this_site(url: str) -> None:
    r = signed_in_from(url, "/login?next=" + quote("/jobs?state=dead", safe="/"))
    assert r.status_code == 303 and r.headers["Location"] == "/jobs?state=dead"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_wrong_passwords_slow_down_the_address_and_the_right_one_works_after(
    database_url: str, seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import replace

    from corral.dashboard.session import SignInThrottle

    clock = FakeClock()
    throttle = SignInThrottle(clock=clock)
    config = replace(settings(database_url), throttle=throttle)
    s = requests.Session()

    def attempt(password: str) -> requests.Response:
        token = csrf_of(s.get(base + "/login").text)
        data = {"csrf": token, "user": "admin", "password": password}
        return s.post(base + "/login", data=data, allow_redirects=False)

    with caplog.at_level("WARNING", logger="corral.dashboard"), serve(config) as base:
        codes = [attempt(f"guess{i}").status_code for i in range(throttle.free)]
        assert codes == [403] * throttle.free
        r = attempt(PASSWORD)  # even the right one waits now: it is not tried
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        assert "too many failed sign-ins" in r.text and "signed in as" not in r.text
        clock.now += 1
        assert attempt("guess-again").status_code == 403
        r = attempt("guess-more")
        assert r.status_code == 429 and r.headers["Retry-After"] == "2"  # growing
        clock.now += 2
        r = attempt(PASSWORD)  # the wait is over: the right password works
        assert r.status_code == 303
        assert "signed in as" in s.get(base + "/").text
        # a success cleared the address: failures are free again
        s.cookies.clear()
        codes = [attempt(f"typo{i}").status_code for i in range(throttle.free - 1)]
        assert codes == [403] * (throttle.free - 1)
        assert attempt(PASSWORD).status_code == 303
    failed = [r for r in caplog.records if "sign-in failed" in r.getMessage()]
    assert len(failed) == throttle.free + 1 + throttle.free - 1
    assert all(r.levelname == "WARNING" and "127.0.0.1" in r.getMessage() for r in failed)
    assert not any(PASSWORD in r.getMessage() or "guess" in r.getMessage() for r in caplog.records)


def test_a_cookie_from_before_sign_out_is_refused(
    url: str, seeded: Seeded, database_url: str
) -> None:
    s = sign_in(url)
    other = sign_in(url)  # another browser, signed in as well
    stolen = s.cookies["corral_dashboard"]  # copied before signing out
    token = csrf_of(s.get(url + "/dispatch").text)
    r = s.post(url + "/logout", data={"csrf": token})
    assert r.status_code == 200 and "signed in as" not in r.text
    replay = requests.Session()
    replay.cookies.set("corral_dashboard", stolen)
    assert "signed in as" not in replay.get(url + "/dispatch").text  # a page: signed out
    r = replay.post(
        url + "/dispatch/pause",
        data={"csrf": token, "queue": "mail", "reason": "replayed after logout"},
        headers=HX,
    )
    assert r.status_code == 403, r.text  # an action: refused
    r = replay.post(url + "/dispatch/pause", data={"csrf": token, "queue": "mail"})
    assert r.status_code == 403  # without htmx too
    with Queue.connect(database_url) as q:
        assert not any(d.paused for d in q.dispatch_status())
        (logout,) = q.audit(10, action="session.logout")
        assert not q.audit(10, action="dispatch.pause")
    assert logout.actor == "admin" and logout.target.startswith("session:")
    assert act(other, url, "/dispatch/pause", queue="mail").status_code == 200  # unaffected
    assert act(sign_in(url), url, "/dispatch/resume", queue="mail").status_code == 200


def test_a_sign_out_holds_on_another_replica_and_after_a_restart(
    database_url: str, seeded: Seeded
) -> None:
    # Two processes with the same key and password (the chart's Secret).
    with serve(settings(database_url)) as first, serve(settings(database_url)) as second:
        s = sign_in(first)
        stolen = s.cookies["corral_dashboard"]
        replay = requests.Session()
        replay.cookies.set("corral_dashboard", stolen)
        assert "signed in as" in replay.get(second + "/").text  # the replica has read: valid
        token = csrf_of(s.get(first + "/").text)
        assert s.post(first + "/logout", data={"csrf": token}).status_code == 200
        # at once, an action on the replica is refused (it reads before every POST)
        r = replay.post(second + "/dispatch/pause", data={"csrf": token, "queue": "mail"},
                        headers=HX)  # fmt: skip
        assert r.status_code == 403
    with serve(settings(database_url)) as restarted:
        replay = requests.Session()
        replay.cookies.set("corral_dashboard", stolen)
        assert "signed in as" not in replay.get(restarted + "/").text
        r = replay.post(restarted + "/dispatch/pause", data={"csrf": token, "queue": "mail"},
                        headers=HX)  # fmt: skip
        assert r.status_code == 403
    with Queue.connect(database_url) as q:
        assert not any(d.paused for d in q.dispatch_status())
