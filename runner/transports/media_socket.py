"""A media transport's WebSocket: messages handed to a callback as they arrive, written in order.

Built on Starlette's public `WebSocket` only. Paced audio leaves from the pacing clock's timer
callback, which cannot await, so `write` queues the message and one writer task per socket sends
what is queued: messages leave in the order they are written, and a close after all of them.
A client that stops reading makes the server's sends wait; what waits here is bounded (the
oldest is dropped: late audio is worth nothing), and a close does not wait for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from starlette.websockets import WebSocket, WebSocketState

from runner.pacing import Flag

log = logging.getLogger("runner.transport")

CLOSE_INTERNAL_ERROR = 1011
#: The most that may wait unsent for a client that does not read.
MAX_QUEUED_BYTES = 1 << 20
#: How long a close waits for queued messages to leave, and then for the close itself.
CLOSE_SECONDS = 2.0
#: What a send to a client that has gone raises (Starlette or the server underneath it).
GONE = (RuntimeError, OSError)


class MediaSocket:
    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._queue: deque[str | bytes] = deque()
        self.queued_bytes = 0
        self.dropped = 0
        self._queued = Flag()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def open(self) -> bool:
        """We may still send: accepted, not closed by us, the client not gone."""
        return (self.websocket.application_state == WebSocketState.CONNECTED
                and self.websocket.client_state == WebSocketState.CONNECTED and not self._closing)

    async def read(self, on_message: Callable[[str | bytes], None]) -> None:
        """Hand every text and binary message to `on_message`, in order, until the client goes
        away (however it went) or the socket is closed from our side."""
        websocket = self.websocket
        while websocket.client_state == WebSocketState.CONNECTED:
            try:
                message = await websocket.receive()
            except GONE:
                return
            if message["type"] != "websocket.receive":
                return
            text = message.get("text")
            try:
                on_message(text if text is not None else message.get("bytes") or b"")
            except Exception:  # our bug, not the client's: this session ends, no other
                log.exception("handling a message from the client failed; ending the session")
                await self.close(CLOSE_INTERNAL_ERROR, "internal error")
                return

    def write(self, data: str | bytes) -> None:
        """Queue one message; dropped once either side has closed."""
        if not self.open:
            return
        queue = self._queue
        queue.append(data)
        self.queued_bytes += len(data)
        while self.queued_bytes > MAX_QUEUED_BYTES and len(queue) > 1:
            self.queued_bytes -= len(queue.popleft())
            if not self.dropped:
                log.warning("the client is not reading what it is sent; past %d KiB waiting, "
                            "the oldest is dropped", MAX_QUEUED_BYTES >> 10)
            self.dropped += 1
        self._queued.set()
        if self._writer is None:
            self._writer = asyncio.create_task(self._send_queued(), name="media-socket:writer")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close after what was written has gone out (a no-op once closed or gone)."""
        if self._closing:
            return
        self._closing = True
        if self._writer is not None:
            self._queued.set()
            await asyncio.wait([self._writer], timeout=CLOSE_SECONDS)  # stopped is fine too
            self._writer.cancel()  # a client that does not read gets no more
        if self.websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(*GONE, TimeoutError):
                await asyncio.wait_for(self.websocket.close(code, reason), CLOSE_SECONDS)

    def stop(self) -> None:
        """The session is over: drop what is queued and end the writer."""
        self._queue.clear()
        self.queued_bytes = 0
        if self._writer is not None:
            self._writer.cancel()

    async def _send_queued(self) -> None:
        queue, send = self._queue, self.websocket.send
        while True:
            while queue:
                data = queue.popleft()
                self.queued_bytes -= len(data)
                message = ({"type": "websocket.send", "text": data} if isinstance(data, str)
                           else {"type": "websocket.send", "bytes": data})
                try:
                    await send(message)
                except GONE:
                    queue.clear()
                    self.queued_bytes = 0
                    return
            if self._closing:
                return
            self._queued.clear()
            await self._queued.wait()
