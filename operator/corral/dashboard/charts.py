"""Server-rendered charts for the dashboard's Overview: per-minute series in,
inline-SVG path data out. Pure (no I/O); `views.overview_charts` calls it and
the templates draw the `<path d=...>` it returns, so no JavaScript chart
library is shipped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WIDTH = 600
HEIGHT = 160
PAD = 4


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart: its name, CSS class, SVG path and its total."""

    name: str
    css: str
    path: str
    total: int
    last: int


@dataclass(frozen=True, slots=True)
class Chart:
    """What the chart template draws: lines over `minutes` minutes ending at
    `end`, the y axis from 0 to `peak`."""

    title: str
    series: list[Series]
    peak: int
    minutes: int
    end: dt.datetime
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return self.peak == 0


def minute_floor(at: dt.datetime) -> dt.datetime:
    return at.replace(second=0, microsecond=0)


def timeline(end: dt.datetime, minutes: int) -> list[dt.datetime]:
    """The `minutes` whole minutes ending with the one `end` falls in, oldest first."""
    last = minute_floor(end)
    return [last - dt.timedelta(minutes=minutes - 1 - i) for i in range(minutes)]


def densify(
    values: Mapping[dt.datetime, int], end: dt.datetime, minutes: int, *, carry: bool = False
) -> list[int]:
    """One value per minute of the timeline; a minute with no record is 0, or,
    with `carry` (a gauge such as depth), the last value recorded before it."""
    out: list[int] = []
    previous = 0
    for minute in timeline(end, minutes):
        if minute in values:
            previous = values[minute]
            out.append(previous)
        else:
            out.append(previous if carry else 0)
    return out


def path(values: Sequence[int], peak: int, *, width: int = WIDTH, height: int = HEIGHT) -> str:
    """SVG path data of `values` as a polyline: x spreads the points over the
    width, y is 0 at the bottom and `peak` at the top (inside PAD)."""
    if not values:
        return ""
    span = max(len(values) - 1, 1)
    top = max(peak, 1)
    usable = height - 2 * PAD
    points = []
    for i, value in enumerate(values):
        x = PAD + (width - 2 * PAD) * i / span
        y = height - PAD - usable * min(max(value, 0), top) / top
        points.append(f"{x:.1f},{y:.1f}")
    return "M" + " L".join(points)


def line_chart(
    title: str,
    lines: Sequence[tuple[str, str, Mapping[dt.datetime, int]]],
    *,
    end: dt.datetime,
    minutes: int = 60,
    carry: bool = False,
) -> Chart:
    """A chart of `lines` (name, CSS class, value per minute) over the last
    `minutes` minutes ending at `end`, all on one y scale."""
    dense = [(name, css, densify(values, end, minutes, carry=carry)) for name, css, values in lines]
    peak = max((max(v) for _, _, v in dense if v), default=0)
    series = [
        Series(name, css, path(v, peak), total=sum(v), last=v[-1] if v else 0)
        for name, css, v in dense
    ]
    return Chart(title, series, peak, minutes, minute_floor(end))
