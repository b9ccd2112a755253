"""The data channel as SmallWebRTC clients use it: keep-alive pings, app messages, signalling.

The client opens the channel (label `chat`) and sends `ping: <ms>` every second; any text that
starts with `ping` proves it is alive. `{"type": "signalling", "message": {...}}` carries control
(`trackStatus` and `peerLeft` from the client, `renegotiate` and `peerLeft` to it); every other
JSON value is an app message. A restarted peer connection brings a new channel, which replaces the
old one here, so the bot's messages follow the client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("runner.webrtc")

#: Messages the bot sends before the channel opens wait here; beyond this many they are dropped.
PENDING_LIMIT = 50
SIGNALLING = "signalling"


class DataChannel:
    """The client's current data channel, seen as pings, app messages and signalling."""

    def __init__(self, on_message: Callable[[Any], None],
                 on_signalling: Callable[[dict[str, Any]], None]) -> None:
        self._on_message = on_message
        self._on_signalling = on_signalling
        self._channel: Any = None
        self._pending: deque[str] = deque()
        self.last_ping: float | None = None

    def adopt(self, channel: Any) -> None:
        """Use the channel the client just opened (aiortc reports remote channels already open)."""
        self._channel = channel
        channel.on("message", self._receive)
        channel.on("open", self._flush)
        if channel.readyState == "open":
            self._flush()

    def forget(self) -> None:
        """The peer connection is being replaced: its channel is gone, and so are its pings."""
        self._channel = None
        self.last_ping = None

    @property
    def open(self) -> bool:
        return self._channel is not None and self._channel.readyState == "open"

    def send(self, data: Any) -> None:
        self._send_text(json.dumps(data))

    def send_signalling(self, kind: str) -> None:
        self._send_text(json.dumps({"type": SIGNALLING, "message": {"type": kind}}))

    async def drain(self, timeout: float) -> None:
        """Wait (at most `timeout`) until what was sent has left, e.g. before closing the peer."""
        deadline = time.monotonic() + timeout
        while self.open and self._channel.bufferedAmount and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def _send_text(self, text: str) -> None:
        if self.open:
            self._channel.send(text)
        elif len(self._pending) < PENDING_LIMIT:
            self._pending.append(text)
        else:
            log.warning("dropped a message to the client: its data channel is not open and %d "
                        "are already waiting", PENDING_LIMIT)

    def _flush(self) -> None:
        while self._pending and self.open:
            self._channel.send(self._pending.popleft())

    def _receive(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            log.debug("ignored a binary data-channel message of %d bytes", len(message))
            return
        if message.startswith("ping"):
            self.last_ping = time.monotonic()
            return
        try:
            data = json.loads(message)
        except json.JSONDecodeError as error:
            log.warning("ignored a data-channel message that is not JSON (%s)", error.msg)
            return
        if isinstance(data, dict) and data.get("type") == SIGNALLING:
            inner = data.get("message")
            if isinstance(inner, dict):
                self._on_signalling(inner)
            else:
                log.warning("ignored a signalling message without a 'message' object")
            return
        self._on_message(data)
