"""A Starlette WebSocket read as the frames it carries, until the peer goes away.

The frames come from the raw ASGI receive callable: `WebSocket.receive` re-checks Starlette's
state machine on every message, which a media stream pays fifty times a second per call. The
state it would record (`client_state` on disconnect) is recorded here instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState


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
