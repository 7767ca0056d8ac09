"""View models of the dashboard: pure functions that turn corral.queue records
into what the templates show (durations, the job browser's filters, workers
grouped by region and pool, the Overview's table and charts, a pool's row).

Called by `corral.dashboard.routes`; tested in tests/unit/test_dashboard_views.py.
No I/O here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from corral.dashboard.charts import Chart, line_chart, minute_floor
from corral.queue import JobState, QueueStats, Worker

PAGE_SIZE = 50
# The Overview counts completed and dead jobs of this many last minutes (from
# the per-minute counters): cheap at any size of the finished table.
FINISHED_WINDOW_MIN = 24 * 60
# The Overview's columns: unfinished states now, then the counters' window.
OVERVIEW_STATES = ["scheduled", "pending", "running", "completed", "dead"]
STATES = [str(s) for s in JobState]


def duration(seconds: float | None) -> str:
    """A short human duration: `-` for none, `850ms`, `42s`, `3m 20s`, `2h 5m`, `3d 4h`."""
    if seconds is None:
        return "-"
    if seconds < 0:
        seconds = 0
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def ago(at: dt.datetime | None, now: dt.datetime) -> str:
    """`12s ago` (or `in 5s` for a time still to come); `-` for none."""
    if at is None:
        return "-"
    delta = (now - at).total_seconds()
    return f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"


def stamp(at: dt.datetime | None) -> str:
    """A timestamp as the pages show it: UTC, to the second."""
    if at is None:
        return "-"
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty_json(value: Any) -> str:
    """A payload or result, indented for a `<pre>` (None: nothing)."""
    if value is None:
        return ""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def segment(name: str) -> str:
    """`name` as one path segment of a URL: every reserved character encoded,
    `/` too (Jinja's urlencode keeps it), so a schedule named
    `../dispatch` posts to `/schedules/..%2Fdispatch/pause`, never to
    `/dispatch/pause`. aiohttp's match_info decodes it back."""
    return quote(name, safe="")


# -- the job browser's filters ------------------------------------------------


# The job browser's filters, in the order of its query strings.
FILTERS = ("queue", "kind", "state", "region", "error")


class FilterError(ValueError):
    """A filter in the job browser's query string is not valid; says which and how."""


@dataclass(frozen=True, slots=True)
class JobFilter:
    """The job browser's filters and page (`before`: ids below this one)."""

    queue: str = ""
    kind: str = ""
    state: str = ""
    region: str = ""
    error: str = ""
    before: int | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> JobFilter:
        """Filters from a query string; an unknown state or a bad page fails with
        FilterError naming the field and what it accepts. Blank means any."""
        values = {k: (query.get(k) or "").strip() for k in ("queue", "kind", "state", "region")}
        error = (query.get("error") or "").strip()
        if values["state"] and values["state"] not in STATES:
            raise FilterError(
                f"state {values['state']!r} is not a job state: use one of {', '.join(STATES)}"
            )
        for name in ("queue", "kind", "region", "error"):
            text = error if name == "error" else values[name]
            if len(text) > 200:
                raise FilterError(f"{name} is longer than 200 characters: shorten it")
        raw_before = (query.get("before") or "").strip()
        before = None
        if raw_before:
            if not raw_before.isdigit() or int(raw_before) < 1:
                raise FilterError(f"before {raw_before!r} must be a job id (a positive integer)")
            before = int(raw_before)
        return cls(before=before, error=error, **values)

    @property
    def active(self) -> bool:
        return bool(self.terms())

    def terms(self, names: Sequence[str] = FILTERS) -> dict[str, str]:
        """The filters among `names` that are set, by name (blank ones left out)."""
        return {name: getattr(self, name) for name in names if getattr(self, name)}

    def query(self, **change: Any) -> str:
        """This filter as a query string, with `change` applied (before=None drops the page)."""
        f = replace(self, **change)
        pairs = f.terms()
        if f.before is not None:
            pairs["before"] = str(f.before)
        return urlencode(pairs)

    def next_page(self, shown: Sequence[Any], page_size: int = PAGE_SIZE) -> str | None:
        """The query string of the next (older) page, None on the last page."""
        if len(shown) < page_size:
            return None
        return self.query(before=shown[-1].id)


# -- the Overview -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatsRow:
    queue: str
    counts: list[int]
    oldest_waiting: str
    paused: bool


def stats_rows(stats: Iterable[QueueStats], states: Sequence[str] = STATES) -> list[StatsRow]:
    """The `corral stats` table: one row per queue, a count per state in `states` order."""
    return [
        StatsRow(
            s.queue,
            [s.counts.get(JobState(state), 0) for state in states],
            duration(s.oldest_pending_age_s),
            s.paused,
        )
        for s in sorted(stats, key=lambda s: s.queue)
    ]


def oldest_waiting(stats: Iterable[QueueStats]) -> tuple[str, str] | None:
    """The queue whose oldest ready job has waited longest, and for how long."""
    waiting = [s for s in stats if s.oldest_pending_age_s is not None]
    if not waiting:
        return None
    top = max(waiting, key=lambda s: s.oldest_pending_age_s or 0.0)
    return top.queue, duration(top.oldest_pending_age_s)


class ThroughputRecord(Protocol):
    @property
    def minute(self) -> dt.datetime: ...
    @property
    def completed(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def dead(self) -> int: ...


class DepthRecord(Protocol):
    @property
    def minute(self) -> dt.datetime: ...
    @property
    def queue(self) -> str: ...
    @property
    def waiting(self) -> int: ...


def throughput_chart(
    rows: Iterable[ThroughputRecord], *, end: dt.datetime, minutes: int = 60
) -> Chart:
    """Completed, failed and dead per minute over every queue, the last `minutes`."""
    totals: dict[str, dict[dt.datetime, int]] = {
        "completed": defaultdict(int),
        "failed": defaultdict(int),
        "dead": defaultdict(int),
    }
    for row in rows:
        minute = minute_floor(row.minute)
        for name, values in totals.items():
            values[minute] += int(getattr(row, name))
    lines = [(name, name, values) for name, values in totals.items()]
    return line_chart("Throughput per minute", lines, end=end, minutes=minutes)


def depth_chart(rows: Iterable[DepthRecord], *, end: dt.datetime, minutes: int = 60) -> Chart:
    """Jobs waiting, summed over queues, per minute (a queue with nothing
    waiting has no sample, so a minute with none is drawn as 0)."""
    per_minute: dict[dt.datetime, int] = defaultdict(int)
    for row in rows:
        per_minute[minute_floor(row.minute)] += int(row.waiting)
    return line_chart(
        "Jobs waiting", [("waiting", "waiting", per_minute)], end=end, minutes=minutes
    )


# -- workers and regions ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerRow:
    id: int
    name: str
    state: str
    load: str
    heartbeat: str
    version: str
    live: bool
    can_drain: bool


@dataclass(slots=True)
class PoolGroup:
    pool: str
    workers: list[WorkerRow] = field(default_factory=list)


@dataclass(slots=True)
class RegionGroup:
    region: str
    live: int = 0
    pools: list[PoolGroup] = field(default_factory=list)


def group_workers(
    workers: Iterable[Worker], now: dt.datetime, *, live_s: float
) -> list[RegionGroup]:
    """The registry by region, then pool (`(no pool)` for a worker started by
    hand), each sorted by name; a region counts the workers heartbeating within
    `live_s` seconds."""
    regions: dict[str, dict[str, list[WorkerRow]]] = defaultdict(lambda: defaultdict(list))
    live: dict[str, int] = defaultdict(int)
    for w in sorted(workers, key=lambda w: (w.region, w.pool or "", w.name, w.id)):
        seen = w.last_heartbeat or w.enrolled_at
        is_live = w.state != "removed" and (now - seen).total_seconds() <= live_s
        live[w.region] += int(is_live)
        regions[w.region][w.pool or "(no pool)"].append(
            WorkerRow(
                id=w.id,
                name=w.name,
                state=w.shown_state,
                load=f"{w.in_flight}/{w.concurrency}",
                heartbeat=ago(w.last_heartbeat, now),
                version=w.version or "-",
                live=is_live,
                can_drain=str(w.state) == "active",
            )
        )
    return [
        RegionGroup(region, live[region], [PoolGroup(p, rows) for p, rows in pools.items()])
        for region, pools in regions.items()
    ]


# -- pools (Kubernetes) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolRow:
    namespace: str
    name: str
    region: str
    queues: str
    replicas: int | None
    desired: int | None
    depth: int | None
    phase: str
    events: list[tuple[str, str, str, str]]


def pool_row(
    pool: Mapping[str, Any], events: Iterable[Mapping[str, Any]], now: dt.datetime, *, keep: int = 5
) -> PoolRow:
    """A WorkerPool object (the API's JSON) and its Events as the Pools page
    shows them: the newest `keep` events, each (when, type, reason, message)."""
    meta = pool.get("metadata", {})
    spec = pool.get("spec", {})
    status = pool.get("status", {}) or {}

    def when(event: Mapping[str, Any]) -> str:
        return str(
            event.get("lastTimestamp")
            or event.get("eventTime")
            or event.get("firstTimestamp")
            or ""
        )

    newest = sorted(events, key=when, reverse=True)[:keep]
    rows = []
    for e in newest:
        at = when(e)
        try:
            shown = ago(dt.datetime.fromisoformat(at.replace("Z", "+00:00")), now)
        except ValueError:
            shown = at or "-"
        rows.append(
            (shown, str(e.get("type", "")), str(e.get("reason", "")), str(e.get("message", "")))
        )
    queues = spec.get("queues") or []
    return PoolRow(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        region=str(status.get("region") or spec.get("region") or "-"),
        queues=status.get("queuesText") or ", ".join(str(q) for q in queues) or "-",
        replicas=status.get("replicas"),
        desired=status.get("desiredReplicas"),
        depth=status.get("queueDepth"),
        phase=str(status.get("phase") or "-"),
        events=rows,
    )
