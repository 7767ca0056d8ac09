"""The `grpc` executor: the standard health check (grpc.health.v1.Health/Check)
against host:port. An optional extra: `pip install corral[grpc]` brings grpcio
and grpcio-health-checking; without them the job fails with a message naming
the extra, and the worker runs on.

The host is resolved and judged by the executor guard, and the channel is
opened to the address judged (`ipv4:`/`ipv6:` targets, the name kept as the
authority and TLS server name), with gRPC's own proxy support off: nothing
resolves the name again.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING, Any

from corral.worker.egress import Guard
from corral.worker.executors.basic import elapsed_ms
from corral.worker.handlers import HandlerError, Job

if TYPE_CHECKING:
    from corral.worker.executors.payloads import GrpcCheck

__all__ = ["GRPC_EXTRA_MISSING", "grpc_executor"]

GRPC_EXTRA_MISSING = (
    "the grpc executor needs the grpc extra, which this worker does not have: "
    "install it with `pip install corral[grpc]` (grpcio and grpcio-health-checking)"
)


def grpc_executor(guard: Guard) -> Any:
    """The `grpc` handler, bound to the worker's guard."""

    async def grpc_check(job: Job[GrpcCheck]) -> dict[str, Any]:
        try:
            import grpc
            from grpc_health.v1 import health_pb2, health_pb2_grpc
        except ImportError:
            raise HandlerError(GRPC_EXTRA_MISSING) from None
        check = job.payload
        host, port_text = re.fullmatch(r"\[?(.*?)\]?:(\d+)", check.target).groups()  # type: ignore[union-attr]
        port = int(port_text)
        started = time.perf_counter()
        options = [("grpc.enable_http_proxy", 0), ("grpc.default_authority", host)]
        try:
            async with asyncio.timeout(check.timeout):
                found = await guard.resolve(host, port)
                _, address = found[0]
                dial = (
                    f"ipv6:[{address}]:{port}" if address.version == 6 else f"ipv4:{address}:{port}"
                )
                if check.tls:
                    options.append(("grpc.ssl_target_name_override", host))
                    channel = grpc.aio.secure_channel(
                        dial, grpc.ssl_channel_credentials(), options=options
                    )
                else:
                    channel = grpc.aio.insecure_channel(dial, options=options)
                async with channel:
                    stub = health_pb2_grpc.HealthStub(channel)
                    reply = await stub.Check(
                        health_pb2.HealthCheckRequest(service=check.service),
                        timeout=check.timeout,
                    )
        except TimeoutError:
            raise HandlerError(f"grpc {check.target}: no answer within {check.timeout}s") from None
        except grpc.aio.AioRpcError as exc:
            raise HandlerError(
                f"grpc {check.target} {check.service or '(server)'}: "
                f"{exc.code().name}: {exc.details()}"
            ) from None
        except OSError as exc:
            raise HandlerError(f"grpc {check.target}: {exc.strerror or exc}") from None
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        if status != "SERVING":
            raise HandlerError(
                f"grpc {check.target} {check.service or '(server)'}: {status}, expected SERVING"
            )
        return {"status": status, "address": str(address), "latency_ms": elapsed_ms(started)}

    return grpc_check
