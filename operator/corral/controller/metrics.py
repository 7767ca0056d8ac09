"""The operator's Prometheus metrics and its small HTTP endpoint.

`/metrics` (prometheus-client text format) and `/healthz` (200 while the
process is healthy, leader or standby; 503 once it lost leadership or kopf
stopped). Started by `corral.controller.cli`; updated by the handlers.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

RECONCILES = Counter(
    "corral_operator_reconciles_total",
    "Reconciles run, by kind of object and outcome.",
    ["kind", "outcome"],
)
POOL_QUEUE_DEPTH = Gauge(
    "corral_pool_queue_depth",
    "Jobs waiting in a pool's queues for its region.",
    ["namespace", "pool"],
)
POOL_REPLICAS = Gauge(
    "corral_pool_replicas",
    "Worker pods of a pool: desired, existing and ready.",
    ["namespace", "pool", "which"],
)
LEADER = Gauge("corral_operator_leader", "1 while this replica is the active operator.")
SCALE_EVALUATIONS = Counter(
    "corral_operator_scale_evaluations_total",
    "Autoscaler evaluations of a pool (notifications are coalesced into these).",
)
SCALE_EVALUATION_SECONDS = Histogram(
    "corral_operator_scale_evaluation_seconds",
    "How long one autoscaler evaluation of a pool took: reading the pool, its "
    "Deployment and its queues, deciding, and writing replicas and status.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SCALE_NOTIFICATIONS = Counter(
    "corral_operator_queue_notifications_total",
    "Wake-ups received from the queue's NOTIFY channel (each may name several queues).",
)
REGISTRY_PURGED = Counter(
    "corral_operator_registry_purged_total",
    "Rows deleted by registry retention: workers removed or silent, tokens dead (--registry-retention).",
    ["what"],
)
SCALE_CHANGES = Counter(
    "corral_operator_scale_changes_total",
    "Changes of a pool's Deployment replicas made by the autoscaler, by direction.",
    ["direction"],
)


def record_pool(namespace: str, name: str, status: dict[str, Any]) -> None:
    if status.get("queueDepth") is not None:
        POOL_QUEUE_DEPTH.labels(namespace, name).set(status["queueDepth"])
    for which, key in (
        ("desired", "desiredReplicas"),
        ("current", "replicas"),
        ("ready", "readyReplicas"),
    ):
        if status.get(key) is not None:
            POOL_REPLICAS.labels(namespace, name, which).set(status[key])


def forget_pool(namespace: str, name: str) -> None:
    # A pool without a sample yet has nothing to remove.
    for which in ("desired", "current", "ready"):
        with contextlib.suppress(KeyError):
            POOL_REPLICAS.remove(namespace, name, which)
    with contextlib.suppress(KeyError):
        POOL_QUEUE_DEPTH.remove(namespace, name)


def serve(host: str, port: int, healthy: Callable[[], bool]) -> ThreadingHTTPServer:
    """Serve /metrics and /healthz from a daemon thread; returns the server
    (its `server_address` tells the port when `port` was 0)."""

    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest())
            elif path in ("/healthz", "/livez", "/readyz"):
                ok = healthy()
                self._reply(200 if ok else 503, "text/plain", b"ok\n" if ok else b"unhealthy\n")
            else:
                self._reply(404, "text/plain", b"try /metrics or /healthz\n")

        def _reply(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the operator's log

    server = ThreadingHTTPServer((host, port), _Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
