"""Rows loaded one value at a time, for a statement whose rows must reach
the caller even when Python cannot load one of their values.

A claim's rows are leased (committed) before they are read: a value psycopg
cannot load ('-infinity' in a timestamp written by plain SQL) must not lose
the whole batch. The executors (`corral.queue.client`, `client_async`) call
`reload` only after the fast `fetchall` raised, for a statement marked
`lenient`; each value that still fails becomes `records.Unloadable`.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import pq

from corral.queue._params import Reloaded
from corral.queue.records import Unloadable

__all__ = ["reload"]


def reload(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> Reloaded:
    """The current result's rows, each value loaded on its own; one Python
    cannot load becomes `Unloadable` naming its column and why."""
    result = cur.pgresult
    if result is None:
        return Reloaded()
    loaders: list[Any] = []
    names: list[str] = []
    for col in range(result.nfields):
        oid, fmt = result.ftype(col), pq.Format(result.fformat(col))
        cls = cur.adapters.get_loader(oid, fmt)
        loaders.append(None if cls is None else cls(oid, cur))
        names.append((result.fname(col) or b"?").decode())
    rows = Reloaded()
    for row in range(result.ntuples):
        values: list[Any] = []
        for col, loader in enumerate(loaders):
            data = result.get_value(row, col)
            if data is None or loader is None:
                values.append(data)
                continue
            try:
                values.append(loader.load(data))
            except (psycopg.DataError, ValueError, OverflowError) as exc:
                values.append(Unloadable(f"{names[col]} cannot be loaded ({exc})"))
        rows.append(tuple(values))
    return rows
