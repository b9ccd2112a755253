"""A Starlette WebSocket read as the frames it carries, until the peer goes away, and written to.

Both go through the raw ASGI callables: Starlette's `receive` and `send_*` re-check its state
machine on every message, which a media stream pays fifty times a second per call each way. The
state they would record (the socket going away) is recorded here instead.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

log = logging.getLogger("runner.transport")


async def frames(websocket: WebSocket) -> AsyncIterator[str | bytes]:
    """Text and binary frames in order; ends on disconnect (however the socket went away)."""
    if websocket.client_state != WebSocketState.CONNECTED:
        return
    receive = websocket._receive
    while True:
        try:
            message = await receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] != "websocket.receive":  # a disconnect (nothing else may come now)
            websocket.client_state = WebSocketState.DISCONNECTED
            return
        if message.get("bytes") is not None:
            yield message["bytes"]
        elif message.get("text") is not None:
            yield message["text"]


async def send_frame(websocket: WebSocket, data: str | bytes) -> None:
    """One text or binary message; nothing once the socket is closed or the peer has gone. No
    lock is needed: the server writes messages in the order they are sent, and a close marks
    the socket closed before it is written."""
    if websocket.application_state != WebSocketState.CONNECTED:
        return
    message = ({"type": "websocket.send", "bytes": data} if isinstance(data, bytes)
               else {"type": "websocket.send", "text": data})
    try:
        await websocket._send(message)
    except OSError as error:  # the peer is gone; note it, as Starlette's send does
        websocket.application_state = WebSocketState.DISCONNECTED
        log.debug("send failed: %r", error)
    except RuntimeError as error:
        log.debug("send failed: %r", error)
