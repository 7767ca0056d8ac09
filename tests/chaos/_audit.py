"""The audit every drill ends with: every enqueued job completed or dead
exactly as expected, none lost, none run twice (no drill here lets a lease
lapse, so any repeat is a fault), and every worker still running. It prints
one line of figures, which the drill's closing note quotes."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from tests.integration._workers import wait_until


def finished_states(dsn: str, ids: list[int]) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT state, count(*) FROM corral_jobs_finished WHERE id = ANY(%s) GROUP BY 1",
            (ids,),
        ).fetchall()
    return {str(state): int(n) for state, n in rows}


def audit(
    drill: str,
    injected: str,
    dsn: str,
    ids: list[int],
    *,
    alive: int,
    fleet_size: int,
    dead: Iterable[int] = (),
    timeout_s: float = 180.0,
    output: str = "",
) -> dict[str, int]:
    expect_dead = set(dead)
    wait_until(
        lambda: sum(finished_states(dsn, ids).values()) == len(ids),
        timeout_s,
        f"every one of the {len(ids)} jobs to finish ({drill})",
    )
    with psycopg.connect(dsn) as conn:
        repeats = conn.execute(
            "SELECT count(*) FROM corral_jobs_finished WHERE id = ANY(%s) AND attempt > 1",
            (ids,),
        ).fetchone()
        dead_ids = {
            r[0]
            for r in conn.execute(
                "SELECT id FROM corral_jobs_finished WHERE id = ANY(%s) AND state = 'dead'",
                (ids,),
            ).fetchall()
        }
        interruptions = conn.execute(
            "SELECT count(*) FROM corral_job_interruptions WHERE job_id = ANY(%s)", (ids,)
        ).fetchone()
        left = conn.execute(
            "SELECT count(*) FROM corral_jobs WHERE id = ANY(%s)", (ids,)
        ).fetchone()
    states = finished_states(dsn, ids)
    figures = {
        "enqueued": len(ids),
        "completed": states.get("completed", 0),
        "dead": states.get("dead", 0),
        "lost": int(left[0]) if left else 0,
        "repeats": int(repeats[0]) if repeats else 0,
        "interruptions": int(interruptions[0]) if interruptions else 0,
        "workers_alive": alive,
        "workers": fleet_size,
    }
    print(
        f"\nchaos {drill}: injected {injected}; audit: "
        + " ".join(f"{k}={v}" for k, v in figures.items()),
        flush=True,
    )
    why = f"{drill}: {figures}\n{output[-6000:]}"
    assert dead_ids == expect_dead, why
    assert figures["completed"] == len(ids) - len(expect_dead), why
    assert figures["lost"] == 0 and figures["repeats"] == 0, why
    assert figures["interruptions"] == 0, why
    assert alive == fleet_size, why
    return figures
