"""Printing records the way kubectl does: aligned tables, or JSON / YAML.

Used only by the admin commands (`corral.admin.cli`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from collections.abc import Sequence
from typing import Any

import click
import yaml

FORMATS = ("table", "json", "yaml")


def plain(value: Any) -> Any:
    """Records -> JSON-ready values (datetimes as ISO 8601 in UTC)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    return value


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Upper-case headers, columns three spaces apart, `<none>` for empty cells."""
    cells = [[("<none>" if c is None or c == "" else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *cells]
    ]
    return "\n".join(lines)


def emit(output: str, records: Any, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print `records` as JSON or YAML, or `rows` under `headers` as a table."""
    if output == "json":
        click.echo(json.dumps(plain(records), indent=2, sort_keys=False))
    elif output == "yaml":
        click.echo(yaml.safe_dump(plain(records), sort_keys=False).rstrip())
    elif rows:
        click.echo(table(headers, rows))
    else:
        click.echo("No resources found.", err=True)


def ago(when: dt.datetime | None, now: dt.datetime | None = None) -> float | None:
    if when is None:
        return None
    return ((now or dt.datetime.now(dt.UTC)) - when).total_seconds()
