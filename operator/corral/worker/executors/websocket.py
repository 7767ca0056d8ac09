"""The `websocket` executor: open a WebSocket with aiohttp's client and,
optionally, send a message and expect text in the first reply.

The connection goes through the same guarded session as `http`
(`corral.worker.executors.guarded`): its host, and a proxy's, are judged by
the executor guard and connected to by the address judged.
"""

from __future__ import annotations

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
from corral.worker.executors.payloads import WebsocketCheck
from corral.worker.handlers import HandlerError

__all__ = ["websocket_executor"]

MAX_MESSAGE_BYTES = 1024 * 1024  # the most of a reply the check reads


def websocket_executor(guard: Guard) -> Any:
    """The `websocket` handler, bound to the worker's guard."""

    return client_executor(guard, lambda check: f"websocket {check.url}", _exchange)


async def _exchange(guard: Guard, check: WebsocketCheck) -> dict[str, Any]:
    started = time.perf_counter()
    url = URL(check.url)
    proxy = await judge_route(guard, url, check.proxy)
    reply: str | None = None
    async with (
        guarded_session(guard) as session,
        session.ws_connect(
            url,
            proxy=proxy,
            ssl=tls_context(check.verify_tls) if url.scheme == "wss" else False,
            max_msg_size=MAX_MESSAGE_BYTES,
            autoping=True,
        ) as ws,
    ):
        opened_ms = elapsed_ms(started)
        transport = ws.get_extra_info("ssl_object")
        tls = cert_summary(transport)
        if check.send is not None:
            await ws.send_str(check.send)
        if check.expect is not None:
            message = await ws.receive()
            if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                raise HandlerError(
                    f"websocket {check.url}: closed before a reply ({message.type.name})"
                )
            data = message.data
            reply = data if isinstance(data, str) else data.decode("utf-8", "replace")
            if check.expect not in reply:
                raise HandlerError(
                    f"websocket {check.url}: reply {reply[:200]!r} does not contain "
                    f"{check.expect!r} (expect)"
                )
        await ws.close()
    return {
        "open_ms": opened_ms,
        "latency_ms": elapsed_ms(started),
        "reply": reply[:1000] if reply is not None else None,
        "proxy": proxy,
        "tls": tls,
    }
