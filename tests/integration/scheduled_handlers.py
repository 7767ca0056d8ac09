"""Handlers that declare schedules, loaded beside `worker_handlers` by the
declared-schedule tests of `test_schedules.py` (`--handlers
tests.integration.scheduled_handlers`): every worker loading them upserts
the schedules at start-up."""

from __future__ import annotations

from typing import Any

import corral
from tests.integration.worker_handlers import scheduled

corral.schedule(
    "declared-nightly", "scheduled", cron="0 3 * * *", timezone="Europe/Berlin",
    queue="scheduled",
)  # fmt: skip
# A queue the test's workers do not serve: they may not declare it.
corral.schedule("declared-elsewhere", "scheduled", every_s=60, queue="elsewhere")


@corral.handler("declared-kind", schedule=corral.every("1h", queue="scheduled"))
async def declared(job: corral.Job[Any]) -> None:
    await scheduled(job)
