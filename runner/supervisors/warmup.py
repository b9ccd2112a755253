"""Warm-up: a worker pays its first-run costs before it is ready, not in its session's answer.

Each worker serves one session, so without this every answer would run cold code: the app builds
its middleware stack on its first request, FastAPI's first sync dependency imports anyio's
backend and starts its thread pool, and a first WebRTC offer compiles aiortc's SDP regexes,
inspects the endpoint and gathers ICE for the first time (together ~25 ms, then ~2.5 ms more
than a second offer). What needs no thread and leaves no loop behind, the zygote pays once for
every worker (`before_fork`); each worker then starts its thread pool and, where WebRTC is
served, rehearses one whole offer with a bot that returns at once, before it says it is ready.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from fastapi import FastAPI

#: How long the rehearsal's session may take to close.
REHEARSAL_SECONDS = 5.0


def before_fork(app: FastAPI) -> None:
    """In the zygote: anyio's backend imported, one request through the whole app."""
    import asyncio

    import anyio._backends._asyncio  # noqa: F401  (what anyio imports on its first use)

    asyncio.run(request(app, "GET", "/health"))


async def warm_up(app: FastAPI) -> None:
    import anyio.to_thread

    await request(app, "GET", "/health")
    await anyio.to_thread.run_sync(lambda: None)
    if "webrtc" in app.state.context.kinds:
        await _rehearse_offer(app)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Runner's own log lines off: what the server logged already, or a rehearsal's session."""
    logger = logging.getLogger("runner")
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(logging.NOTSET)


async def request(app: FastAPI, method: str, path: str, body: bytes = b"",
                  headers: list[tuple[bytes, bytes]] | None = None) -> int:
    """One request through the whole app; returns its status."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": b"", "headers": headers or [], "state": {}}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        status = message.get("status", status)

    await app(scope, receive, send)
    return status


async def _leave_at_once(transport: Any) -> None:
    """The rehearsal's bot."""


async def _rehearse_offer(app: FastAPI) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection

    context = app.state.context
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    bot = context.sessions.bot
    try:
        client.addTransceiver("audio", direction="sendrecv")
        client.createDataChannel("chat")
        await client.setLocalDescription(await client.createOffer())
        body = json.dumps({"sdp": client.localDescription.sdp, "type": "offer"}).encode()
        headers = [(b"content-type", b"application/json")]
        if context.config.api_key:
            headers.append((b"authorization", f"Bearer {context.config.api_key}".encode()))
        context.sessions.bot = replace(bot, func=_leave_at_once)
        with quiet():
            await request(app, "POST", "/api/offer", body, headers)
            await context.sessions.wait_idle(REHEARSAL_SECONDS)
    finally:
        context.sessions.bot = bot
        await client.close()
