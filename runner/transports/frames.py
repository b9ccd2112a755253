"""A media transport's WebSocket: frames handed to a callback as they arrive, written at once.

Both go through the frame link (runner.framelink) of the connection the server accepted, not
through Starlette's `receive`/`send_*`: those re-check a state machine and cost a coroutine per
message, which a media stream pays fifty times a second per call each way. The state Starlette
would record (the socket going away) is recorded here instead.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from runner.framelink import FRAME_LINK, FrameLink


class MediaSocket:
    """`read` hands frames to a callback; `write` is the link's own (runner.framelink.FrameLink):
    one text or binary message, nothing once either side has closed or the peer has gone, and
    messages leave in the order they are written, a close after all of them."""

    def __init__(self, websocket: WebSocket) -> None:
        link: FrameLink | None = websocket.scope.get("extensions", {}).get(FRAME_LINK)
        if link is None:
            raise RuntimeError("this WebSocket did not come through runner's server (no frame link)")
        self.websocket = websocket
        self._link = link
        self.write: Callable[[str | bytes], None] = link.write  # no call of our own in between

    async def read(self, on_frame: Callable[[str | bytes], None]) -> None:
        """Hand every text and binary frame to `on_frame`, in order, until the peer goes away
        (however it went) or the socket is closed from our side."""
        websocket = self.websocket
        if websocket.client_state != WebSocketState.CONNECTED:
            return
        self._link.listen(on_frame)
        receive = websocket._receive
        while True:
            try:
                message = await receive()
            except (WebSocketDisconnect, RuntimeError):
                break
            if message["type"] == "websocket.disconnect":
                break
        websocket.client_state = WebSocketState.DISCONNECTED
