"""Probes: when to run them (pure `ProbeSchedule`) and how (`run_http`, `run_tcp`).

`_pod` owns one `ProbeWorker` thread per probe of a running container, as the
kubelet owns one goroutine per probe; exec probes go through the pod's
`Runtime.exec_in` so they run inside the container's namespaces.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]


@dataclass
class ProbeSchedule:
    """Thresholds and timing of one probe (times are monotonic seconds)."""

    initial_delay_s: float
    period_s: float
    timeout_s: float
    success_threshold: int
    failure_threshold: int
    # None until the thresholds decide; readiness starts False, liveness True
    result: bool | None
    next_at: float
    successes: int = 0
    failures: int = 0

    @classmethod
    def from_spec(cls, probe: Json, started_at: float, initial: bool | None) -> ProbeSchedule:
        delay = float(probe.get("initialDelaySeconds") or 0)
        return cls(
            initial_delay_s=delay,
            period_s=float(probe.get("periodSeconds") or 10),
            timeout_s=float(probe.get("timeoutSeconds") or 1),
            success_threshold=int(probe.get("successThreshold") or 1),
            failure_threshold=int(probe.get("failureThreshold") or 3),
            result=initial,
            next_at=started_at + delay,
        )

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, ok: bool, now: float) -> bool:
        """Count one probe outcome; return True when `result` changed."""
        self.next_at = now + self.period_s
        before = self.result
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.success_threshold:
                self.result = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.failure_threshold:
                self.result = False
        return self.result != before


def resolve_port(port: int | str, container: Json) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"named port {port!r} is not declared in the container's ports")


def run_http(
    action: Json, default_host: str, container: Json, timeout_s: float
) -> tuple[bool, str]:
    host = action.get("host") or default_host
    port = resolve_port(action.get("port", 80), container)
    path = action.get("path") or "/"
    conn_cls = (
        http.client.HTTPSConnection
        if str(action.get("scheme", "HTTP")).upper() == "HTTPS"
        else http.client.HTTPConnection
    )
    kwargs: dict[str, Any] = {"timeout": timeout_s}
    if conn_cls is http.client.HTTPSConnection:
        import ssl

        kwargs["context"] = ssl._create_unverified_context()  # the kubelet does not verify either
    try:
        conn = conn_cls(host, port, **kwargs)
        headers = {h["name"]: h["value"] for h in action.get("httpHeaders") or []}
        headers.setdefault("User-Agent", "kube-probe/1.36")
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read(10240)
        conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return False, f"Get http://{host}:{port}{path}: {exc}"
    if 200 <= resp.status < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {resp.status}"


def run_tcp(action: Json, default_host: str, container: Json, timeout_s: float) -> tuple[bool, str]:
    host = action.get("host") or default_host
    port = resolve_port(action.get("port", 0), container)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True, ""
    except OSError as exc:
        return False, f"dial tcp {host}:{port}: {exc}"


class ProbeWorker(threading.Thread):
    """Runs one probe on its schedule until stopped; `on_change` sees result flips."""

    def __init__(
        self,
        kind: str,
        schedule: ProbeSchedule,
        attempt: Callable[[float], tuple[bool, str]],
        # (kind, result, message, changed): failures are reported even when the
        # threshold is not reached yet (for Unhealthy events), `changed` says
        # whether the result itself flipped
        on_change: Callable[[str, bool | None, str, bool], None],
    ) -> None:
        super().__init__(daemon=True, name=f"probe-{kind}")
        self.kind = kind
        self.schedule = schedule
        self._attempt = attempt
        self._on_change = on_change
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        while not self._halt.is_set():
            wait = self.schedule.next_at - time.monotonic()
            if wait > 0 and self._halt.wait(min(wait, 1.0)):
                return
            if not self.schedule.due(time.monotonic()):
                continue
            try:
                ok, message = self._attempt(self.schedule.timeout_s)
            except Exception as exc:  # a broken probe spec is a failed probe
                ok, message = False, str(exc)
            if self._halt.is_set():
                return
            changed = self.schedule.record(ok, time.monotonic())
            if changed or not ok:
                self._on_change(self.kind, self.schedule.result, message, changed)
