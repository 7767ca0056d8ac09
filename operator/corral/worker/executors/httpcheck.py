"""The `http` executor: one request on aiohttp's client, judged by the
executor guard at every hop.

Redirects are followed here, one hop at a time (`max_redirects` at most),
so each target is judged before it is connected to and the chain is in the
result. Chunked and compressed bodies are aiohttp's; the body is read up to
`max_body_bytes` and a longer one fails the check. The proxy is the payload's
`proxy`, else the one HTTP_PROXY / HTTPS_PROXY / NO_PROXY choose. A check
that does not meet its expectations (status, body keyword, JSON field)
raises `HandlerError`, so the job fails through the normal retry path.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
from yarl import URL

from corral.worker.egress import Guard
from corral.worker.executors.basic import elapsed_ms
from corral.worker.executors.guarded import (
    cert_summary,
    client_executor,
    guarded_session,
    judge_route,
    tls_context,
)
from corral.worker.executors.payloads import HttpCheck
from corral.worker.handlers import HandlerError

__all__ = ["http_executor"]

_REDIRECTS = {301, 302, 303, 307, 308}
_CREDENTIALS = {"authorization", "cookie", "proxy-authorization"}  # dropped across origins


def http_executor(guard: Guard) -> Any:
    """The `http` handler, bound to the worker's guard."""

    return client_executor(guard, lambda check: f"{check.method} {check.url}", _request)


async def _request(guard: Guard, check: HttpCheck) -> dict[str, Any]:
    started = time.perf_counter()
    url, method, body, headers = URL(check.url), check.method, check.body, check.headers
    hops: list[str] = []
    async with guarded_session(guard) as session:
        while True:
            proxy = await judge_route(guard, url, check.proxy)
            async with session.request(
                method,
                url,
                data=body.encode() if body is not None else None,
                headers=headers,
                allow_redirects=False,
                proxy=proxy,
                ssl=tls_context(check.verify_tls) if url.scheme == "https" else False,
            ) as response:
                location = response.headers.get("Location")
                if check.follow_redirects and response.status in _REDIRECTS and location:
                    if len(hops) >= check.max_redirects:
                        raise HandlerError(
                            f"{check.method} {check.url}: more than {check.max_redirects} "
                            f"redirects (max_redirects): {' -> '.join([*hops, str(url)])}"
                        )
                    hops.append(str(url))
                    origin, url = url.origin(), url.join(URL(location))
                    if url.scheme not in ("http", "https"):
                        raise HandlerError(f"{hops[-1]}: redirect to {url.scheme}: refused")
                    if url.origin() != origin:  # credentials stay with their origin
                        headers = {
                            k: v for k, v in headers.items() if k.lower() not in _CREDENTIALS
                        }
                    if response.status == 303 or (
                        response.status in (301, 302) and method == "POST"
                    ):
                        method, body = "GET", None
                    continue
                tls = cert_summary(_ssl_object(response))
                data = await _read_capped(response, check.max_body_bytes, str(url))
                status = response.status
                break
    result: dict[str, Any] = {
        "status": status,
        "url": str(url),
        "redirects": hops,
        "bytes": len(data),
        "latency_ms": elapsed_ms(started),
        "proxy": proxy,
        "tls": tls,
        "cert_expires_in_days": tls.get("days_left") if tls else None,
    }
    where = f"{method} {url}"
    expected = check.expected_status
    expected = expected if isinstance(expected, list) else [expected]
    if status not in expected:
        raise HandlerError(f"{where}: status {status}, expected {expected} (expected_status)")
    if check.expect_body is not None and check.expect_body.encode() not in data:
        raise HandlerError(f"{where}: body does not contain {check.expect_body!r} (expect_body)")
    if check.expect_json is not None:
        _expect_json(where, data, check.expect_json)
    return result


def _ssl_object(response: aiohttp.ClientResponse) -> Any:
    """The response's TLS object. aiohttp lets go of `response.connection`
    as soon as a body arrives whole with the headers, so the protocol it
    read from is asked then (tests/integration/test_worker_executors.py
    fails if aiohttp stops keeping it)."""
    holder = response.connection or getattr(response, "_protocol", None)
    transport = getattr(holder, "transport", None)
    return transport.get_extra_info("ssl_object") if transport is not None else None


async def _read_capped(response: aiohttp.ClientResponse, cap: int, where: str) -> bytes:
    if response.content_length is not None and response.content_length > cap:
        raise HandlerError(
            f"{where}: body of {response.content_length} bytes is over max_body_bytes ({cap})"
        )
    data = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > cap:
            raise HandlerError(f"{where}: body is over max_body_bytes ({cap} bytes)")
    return bytes(data)


def _expect_json(where: str, data: bytes, expected: dict[str, Any]) -> None:
    try:
        document = json.loads(data)
    except ValueError:
        raise HandlerError(f"{where}: body is not JSON (expect_json)") from None
    for path, want in expected.items():
        value: Any = document
        for part in path.split("."):
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                raise HandlerError(f"{where}: no field {path!r} in the body (expect_json)")
        if value != want:
            raise HandlerError(
                f"{where}: field {path!r} is {value!r}, expected {want!r} (expect_json)"
            )
