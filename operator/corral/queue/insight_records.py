"""Records of the dashboard's reads (`corral.queue._insights`): per-minute
throughput and depth, and the audit trail.

Beside `records.py` (the rest of the queue's records) so neither module
grows past its size limit; `corral.queue` re-exports them. Callers: the
dashboard (`corral dashboard`), `corral audit list` (`corral.admin.audit`),
tests and the dashboard benchmark (`bench/dashboard.py`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ThroughputMinute:
    """Jobs of one queue that finished in one minute (by `finished_at`),
    as of the last `rollup_throughput`. `failed` counts attempts that failed
    and were retried (handler errors, timeouts, lapsed leases), read from the
    jobs finishing in that minute (their attempts before the last)."""

    minute: dt.datetime
    queue: str
    completed: int
    failed: int
    dead: int


@dataclass(frozen=True, slots=True)
class DepthMinute:
    """Jobs of one queue waiting (pending, or scheduled and due) when the
    rollup sampled that minute."""

    minute: dt.datetime
    queue: str
    waiting: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded action: who (`actor`) did what (`action`) to what
    (`target`), when (`at`), with its details (JSON, or None)."""

    id: int
    at: dt.datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any] | None
