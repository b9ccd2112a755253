"""Exotel's chunk rule for the audio of a Pipecat runner bot (PROTOCOLS.md section 4.4).

Exotel plays outbound audio smoothly only in chunks of at least 200 ms that are whole multiples
of 20 ms; shorter ones jitter and odd lengths leave gaps. Pipecat's Exotel serializer sends each
chunk as the pipeline makes it (40 ms, or whatever resampling leaves), so the socket handed to
such a bot regroups its `media` messages: whole 20 ms units once 200 ms are held, and the tail of
an utterance, padded with silence to the same rule, once no audio followed it for `TAIL_AFTER`.
A `clear` drops what is held (the caller was interrupting); any other message goes out after it.
Runner's own Exotel transport paces whole chunks itself and needs none of this.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from collections.abc import Iterable
from typing import Any

from starlette.types import Message
from starlette.websockets import WebSocket

from runner.handover import ReplayWebSocket
from runner.transports.telephony.exotel import ExotelCodec

UNIT_SECONDS = 0.02
#: The smallest chunk, in units: the one runner's own Exotel transport sends.
SMALLEST_CHUNK_UNITS = round(ExotelCodec.chunk_seconds / UNIT_SECONDS)
#: Pipecat's output sends a chunk every 40 ms while it speaks: a longer pause ends the utterance.
TAIL_AFTER = 0.1


def _media_event(message: Message) -> dict[str, Any] | None:
    """The JSON of an outbound text message, when it is an object (else None: sent as it is)."""
    text = message.get("text") if message["type"] == "websocket.send" else None
    if not text:
        return None
    try:
        event = json.loads(text)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


class ExotelRegrouping(ReplayWebSocket):
    """The bot's socket for an Exotel call: its outbound audio regrouped to Exotel's chunks."""

    def __init__(self, websocket: WebSocket, replay: Iterable[Message], sample_rate: int) -> None:
        super().__init__(websocket, replay)
        self._unit = int(sample_rate * UNIT_SECONDS) * 2
        self._held = bytearray()
        self._last: dict[str, Any] = {}
        self._tail: asyncio.TimerHandle | None = None
        self._tail_sender: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()

    async def send(self, message: Message) -> None:
        event = _media_event(message)
        kind = event.get("event") if event else None
        if kind == "media" and event is not None:
            try:
                pcm = base64.b64decode(event["media"]["payload"], validate=True)
            except (KeyError, TypeError, binascii.Error):
                pcm = None
            if pcm is not None:
                await self._hold(event, pcm)
                return
        if kind == "clear":
            self._drop()
        else:
            await self._flush_tail()
        async with self._sending:
            await super().send(message)

    async def _hold(self, event: dict[str, Any], pcm: bytes) -> None:
        self._last = event
        self._held += pcm
        self._schedule_tail()
        whole = len(self._held) // self._unit * self._unit
        if whole >= SMALLEST_CHUNK_UNITS * self._unit:
            chunk = bytes(self._held[:whole])
            del self._held[:whole]
            await self._send_media(chunk)

    async def _send_media(self, pcm: bytes) -> None:
        event = dict(self._last)
        event["media"] = {**event.get("media", {}), "payload": base64.b64encode(pcm).decode()}
        async with self._sending:
            await super().send({"type": "websocket.send", "text": json.dumps(event)})

    async def _flush_tail(self) -> None:
        """What is held, padded with silence to whole units and to the smallest chunk."""
        if self._tail is not None:
            self._tail.cancel()
            self._tail = None
        if not self._held:
            return
        units = max(SMALLEST_CHUNK_UNITS, -(-len(self._held) // self._unit))
        chunk = bytes(self._held) + bytes(units * self._unit - len(self._held))
        self._held.clear()
        with contextlib.suppress(RuntimeError, OSError):  # the call may have ended meanwhile
            await self._send_media(chunk)

    def _schedule_tail(self) -> None:
        if self._tail is not None:
            self._tail.cancel()
        self._tail = asyncio.get_running_loop().call_later(TAIL_AFTER, self._send_tail)

    def _send_tail(self) -> None:
        self._tail = None
        self._tail_sender = asyncio.get_running_loop().create_task(self._flush_tail())

    def _drop(self) -> None:
        if self._tail is not None:
            self._tail.cancel()
            self._tail = None
        self._held.clear()
