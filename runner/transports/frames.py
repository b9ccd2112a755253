"""A Starlette WebSocket read as the frames it carries, until the peer goes away."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.websockets import WebSocket, WebSocketDisconnect


async def frames(websocket: WebSocket) -> AsyncIterator[str | bytes]:
    """Text and binary frames in order; ends on disconnect (however the socket went away)."""
    while True:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            yield message["bytes"]
        elif message.get("text") is not None:
            yield message["text"]
