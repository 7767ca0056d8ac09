"""The dashboard's view models (corral.dashboard.views, charts, session):
pure functions from queue records to what the pages show."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path

import pytest

from corral.dashboard import charts, views
from corral.dashboard.app import HTMX_VERSION
from corral.dashboard.session import Auth, Session
from corral.queue import JobState, QueueStats, Worker, WorkerState

NOW = dt.datetime(2026, 12, 1, 12, 30, 20, tzinfo=dt.UTC)
STATIC = Path(views.__file__).parent / "static"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "-"),
        (0.25, "250ms"),
        (42, "42s"),
        (60, "1m"),
        (200, "3m 20s"),
        (7500, "2h 5m"),
        (3 * 86400 + 4 * 3600 + 59, "3d 4h"),
        (-5, "0ms"),
    ],
)
def test_duration(seconds: float | None, shown: str) -> None:
    assert views.duration(seconds) == shown


def test_ago_says_past_and_future() -> None:
    assert views.ago(NOW - dt.timedelta(seconds=12), NOW) == "12s ago"
    assert views.ago(NOW + dt.timedelta(minutes=2), NOW) == "in 2m"
    assert views.ago(None, NOW) == "-"


def test_segment_encodes_every_reserved_character_and_the_slash() -> None:
    # One path segment: "../dispatch" must not become a path of its own.
    assert views.segment("../dispatch") == "..%2Fdispatch"
    assert views.segment("50% off?#now") == "50%25%20off%3F%23now"
    assert views.segment("nightly") == "nightly"


def test_filter_parses_and_round_trips() -> None:
    f = views.JobFilter.parse(
        {"queue": " mail ", "state": "dead", "error": "Timeout", "before": "120", "kind": ""}
    )
    assert (f.queue, f.state, f.error, f.before, f.kind) == ("mail", "dead", "Timeout", 120, "")
    assert f.active
    assert f.query(before=None) == "queue=mail&state=dead&error=Timeout"
    assert f.terms(("queue", "kind", "region", "error")) == {"queue": "mail", "error": "Timeout"}
    assert not views.JobFilter.parse({}).active


def test_filter_rejects_unknown_state_naming_the_field() -> None:
    with pytest.raises(views.FilterError, match=r"state 'done' is not a job state: use one of"):
        views.JobFilter.parse({"state": "done"})


@pytest.mark.parametrize("before", ["abc", "0", "-3"])
def test_filter_rejects_a_bad_page(before: str) -> None:
    with pytest.raises(views.FilterError, match=r"before .* must be a job id"):
        views.JobFilter.parse({"before": before})


class _Row:
    def __init__(self, id: int) -> None:
        self.id = id


def test_next_page_is_keyset_below_the_last_shown() -> None:
    f = views.JobFilter(queue="q")
    full = [_Row(i) for i in range(100, 50, -1)]  # 50 rows: a full page
    assert f.next_page(full, page_size=50) == "queue=q&before=51"
    assert f.next_page(full[:10], page_size=50) is None


def test_stats_rows_follow_the_state_order() -> None:
    stats = [
        QueueStats("b", {JobState.DEAD: 2, JobState.PENDING: 5}, 75.0, paused=True),
        QueueStats("a", {JobState.COMPLETED: 9}, None),
    ]
    rows = views.stats_rows(stats)
    assert [r.queue for r in rows] == ["a", "b"]
    b = rows[1]
    assert b.counts[views.STATES.index("dead")] == 2
    assert b.counts[views.STATES.index("pending")] == 5
    assert b.oldest_waiting == "1m 15s" and b.paused
    assert views.oldest_waiting(stats) == ("b", "1m 15s")
    assert views.oldest_waiting([stats[1]]) is None


def test_path_maps_values_onto_the_box() -> None:
    d = charts.path([0, 10, 5], 10, width=100, height=50)
    points = [tuple(map(float, p.split(","))) for p in d[1:].split(" L")]
    pad = charts.PAD
    assert points[0] == (pad, 50 - pad)  # 0: bottom left
    assert points[1] == (50.0, pad)  # the peak: top
    assert points[2] == (100 - pad, 25.0)  # half
    assert charts.path([], 3) == ""


class _T:
    def __init__(self, minute: dt.datetime, completed: int, failed: int, dead: int) -> None:
        self.minute, self.completed, self.failed, self.dead = minute, completed, failed, dead


class _D:
    def __init__(self, minute: dt.datetime, queue: str, waiting: int) -> None:
        self.minute, self.queue, self.waiting = minute, queue, waiting


def test_throughput_chart_sums_queues_per_minute_and_fills_gaps() -> None:
    m = charts.minute_floor(NOW)
    rows = [
        _T(m, 3, 1, 0),
        _T(m, 4, 0, 2),  # another queue, same minute
        _T(m - dt.timedelta(minutes=2), 10, 0, 0),
        _T(m - dt.timedelta(minutes=90), 999, 0, 0),  # before the window: ignored
    ]
    chart = views.throughput_chart(rows, end=NOW, minutes=5)
    by = {s.name: s for s in chart.series}
    assert by["completed"].total == 17 and by["completed"].last == 7
    assert by["failed"].total == 1 and by["dead"].total == 2
    assert chart.peak == 10
    # five points per line: one per minute, gaps drawn as 0
    assert by["completed"].path.count("L") == 4


def test_densify_fills_gaps_with_zero_or_carries_a_gauge() -> None:
    m = charts.minute_floor(NOW)
    sample = {m - dt.timedelta(minutes=3): 7}
    assert charts.densify(sample, NOW, 5) == [0, 7, 0, 0, 0]
    assert charts.densify(sample, NOW, 5, carry=True) == [0, 7, 7, 7, 7]


def test_depth_chart_sums_queues_per_minute() -> None:
    m = charts.minute_floor(NOW)
    rows = [_D(m - dt.timedelta(minutes=1), "a", 5), _D(m - dt.timedelta(minutes=1), "b", 2)]
    chart = views.depth_chart(rows, end=NOW, minutes=5)
    assert chart.series[0].total == 7 and chart.peak == 7 and chart.series[0].last == 0


def _worker(id: int, region: str, pool: str | None, state: str, beat_s: float) -> Worker:
    return Worker(
        id=id,
        name=f"w{id}",
        region=region,
        pool=pool,
        queues=["q"],
        concurrency=4,
        state=WorkerState(state),
        in_flight=1,
        last_heartbeat=NOW - dt.timedelta(seconds=beat_s),
        version="0.1.0",
        enrolled_at=NOW - dt.timedelta(hours=1),
        drain_requested_at=None,
        drained_at=None,
        removed_at=None,
    )


def test_group_workers_by_region_then_pool_counting_live_ones() -> None:
    groups = views.group_workers(
        [
            _worker(3, "eu", "fast", "active", 2),
            _worker(1, "eu", None, "draining", 2),
            _worker(2, "us", "fast", "active", 600),  # stale heartbeat: not live
        ],
        NOW,
        live_s=30,
    )
    assert [(g.region, g.live) for g in groups] == [("eu", 2), ("us", 0)]
    eu = groups[0]
    assert [p.pool for p in eu.pools] == ["(no pool)", "fast"]
    row = eu.pools[1].workers[0]
    assert (row.load, row.heartbeat, row.can_drain) == ("1/4", "2s ago", True)
    assert eu.pools[0].workers[0].can_drain is False  # already draining


def test_pool_row_reads_status_and_keeps_the_newest_events() -> None:
    pool = {
        "metadata": {"namespace": "jobs", "name": "mail"},
        "spec": {"queues": ["mail"], "region": "eu"},
        "status": {"replicas": 3, "desiredReplicas": 5, "queueDepth": 120, "phase": "Scaling"},
    }
    events = [
        {
            "lastTimestamp": f"2026-12-01T12:{m:02d}:00Z",
            "type": "Normal",
            "reason": "Scaled",
            "message": f"to {m}",
        }
        for m in range(10)
    ]
    row = views.pool_row(pool, events, NOW, keep=3)
    assert (row.replicas, row.desired, row.depth, row.phase) == (3, 5, 120, "Scaling")
    assert [e[3] for e in row.events] == ["to 9", "to 8", "to 7"]
    assert row.events[0][0] == "21m 20s ago"


def test_session_cookie_round_trips_and_rejects_tampering_and_age() -> None:
    auth = Auth(secret_key="k", password="pw")
    s = Session.fresh(user="admin")
    cookie = auth.dump(s)
    assert auth.load(cookie) == s
    assert auth.load(cookie[:-2] + "xx") is None
    assert Auth(secret_key="other", password="pw").load(cookie) is None
    expired = Auth(secret_key="k", password="pw", max_age_s=-1)
    assert expired.load(cookie) is None


def test_changing_the_password_or_user_ends_every_session() -> None:
    cookie = Auth(secret_key="k", password="leaked").dump(Session.fresh(user="admin"))
    assert Auth(secret_key="k", password="leaked").load(cookie) is not None
    assert Auth(secret_key="k", password="replaced").load(cookie) is None
    assert Auth(secret_key="k", user="ops", password="leaked").load(cookie) is None
    assert Auth(secret_key="k").load(cookie) is None  # no password: read-only


def test_csrf_token_is_bound_to_the_session() -> None:
    auth = Auth(secret_key="k", password="pw")
    a, b = Session.fresh(), Session.fresh()
    assert auth.csrf_ok(a, auth.csrf_token(a))
    assert not auth.csrf_ok(a, auth.csrf_token(b))
    assert not auth.csrf_ok(a, None) and not auth.csrf_ok(a, "")


def test_password_check() -> None:
    auth = Auth(secret_key="k", user="admin", password="pw")
    assert auth.check_password("admin", "pw")
    assert not auth.check_password("admin", "pW")
    assert not auth.check_password("root", "pw")
    assert not Auth(secret_key="k").check_password("admin", "")


def test_vendored_htmx_matches_its_recorded_version_and_hash() -> None:
    readme = (STATIC / "README.md").read_text()
    row = re.search(r"`htmx.min.js` \|[^|]*\| ([\d.]+) \| `([0-9a-f]{64})`", readme)
    assert row, "static/README.md lists htmx.min.js with its version and sha256"
    version, digest = row.groups()
    assert version == HTMX_VERSION
    assert hashlib.sha256((STATIC / "htmx.min.js").read_bytes()).hexdigest() == digest
