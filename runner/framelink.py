"""The frame link: how a media transport reads and writes its WebSocket without ASGI messages.

Fifty messages a second per call each way make the ASGI path (a coroutine per send, a task
hop per receive) cost more than the audio work. A server that offers the link puts an object
with these two methods in `scope["extensions"]["runner.frames"]`: runner's WebSocket protocol
(runner.wsprotocol) and a worker's relayed connection (runner.supervisors.worker). The
handshake, the close and the end of the connection (websocket.disconnect) stay ASGI messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

FRAME_LINK = "runner.frames"


def data_message(kind: str, data: str | bytes) -> dict[str, Any]:
    """The ASGI message (`websocket.receive` or `websocket.send`) that carries `data`."""
    return {"type": kind, "text": data} if isinstance(data, str) else {"type": kind, "bytes": data}


def message_data(message: dict[str, Any]) -> str | bytes:
    """What a text or binary ASGI WebSocket message carries."""
    text = message.get("text")
    return text if text is not None else message["bytes"]


class FrameLink(Protocol):
    def listen(self, on_frame: Callable[[str | bytes], None], on_tick: bool = True) -> None:
        """Hand every text or binary message to `on_frame` from now on (queued ones first).
        `on_tick`: where the link reads a socket, read it on the shared frame clock's tick (all
        connections in one wake-up; runner.tickread) rather than as bytes arrive."""

    def write(self, data: str | bytes) -> None:
        """Send one message now; dropped once either side has closed or the peer has gone."""
