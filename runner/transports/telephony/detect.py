"""Which provider is on a fresh media socket, from its first messages (PROTOCOLS.md section 6).

`connected` is only a hint (Plivo sends none, and clones copy shapes): the `start` message
decides, by key sets that are disjoint between providers. Nothing read here is lost: the start
becomes `TelephonyStream.start`, and a data that had to be read past it is handed back in
`replay` for the transport to process first. What the start left to assume (a missing rate, a
loose encoding label) is logged here, once per call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from runner.transports.base import CallInfo
from runner.transports.telephony.codec import Codec, Malformed, StreamStart
from runner.transports.telephony.providers import CODECS
from runner.transports.telephony.vonage import VonageCodec

log = logging.getLogger("runner.telephony")

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY = 1008
DEFAULT_TIMEOUT = 10.0  # Exotel fails a session whose bot has not answered within 10 s

Data = str | bytes  # what one WebSocket message carries


class DetectionError(Exception):
    """The socket is not a stream we can serve; `code` is the close code (None: already gone)."""

    def __init__(self, reason: str, code: int | None = CLOSE_POLICY) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class TelephonyStream:
    """A detected stream: the provider, what its start said, and messages to process first."""

    provider: str
    start: StreamStart
    replay: tuple[Data, ...] = ()
    hint: str | None = None  # what `connected` suggested, when one came

    @property
    def call(self) -> CallInfo:
        return self.start.call

    @property
    def parameters(self) -> Mapping[str, str]:
        return self.start.parameters


async def parse_telephony_websocket(
    websocket: WebSocket, *, provider: str | None = None, timeout: float = DEFAULT_TIMEOUT
) -> TelephonyStream:
    """Read a media socket's first messages and say which provider it is and which call.

    Accepts the socket if that has not happened yet. `provider` skips detection for providers
    that speak another's protocol (SignalWire talks Twilio): the start is then read with that
    provider's codec. Raises DetectionError with the reason (and the close code to use).
    """
    if provider is not None and provider not in CODECS:
        raise ValueError(f"unknown provider {provider!r} (known: {', '.join(CODECS)})")
    if websocket.application_state == WebSocketState.CONNECTING:
        await websocket.accept()
    try:
        async with asyncio.timeout(timeout):
            stream = await _detect(websocket, provider)
    except TimeoutError:
        raise DetectionError(f"no start message within {timeout:g} s") from None
    if stream.start.assumed:
        log.info("%s call %s: %s", stream.provider, stream.call.call_id or "(no call id)",
                 "; ".join(stream.start.assumed))
    return stream


async def _detect(websocket: WebSocket, expected: str | None) -> TelephonyStream:
    hint: str | None = None
    message = await _next_message(websocket)
    if isinstance(message, dict) and message.get("event") == "connected":
        hint = _hint(message)
        message = await _next_message(websocket)
    if isinstance(message, bytes):
        if expected not in (None, "vonage"):
            raise DetectionError(f"binary message before the {expected} start message",
                                 CLOSE_UNSUPPORTED_DATA)
        # Only Vonage sends audio as binary; its stream then runs at the rate of our NCCO.
        return TelephonyStream("vonage", VonageCodec.audio_first_start(), (message,), hint)
    codec = _codec_for(message, expected)
    if codec is None:
        raise DetectionError(_unexpected(message, expected))
    try:
        return TelephonyStream(codec.provider, codec.parse_start(message), (), hint)
    except Malformed as error:
        raise DetectionError(f"{codec.provider} start: {error}", CLOSE_UNSUPPORTED_DATA) from None


async def _next_message(websocket: WebSocket) -> dict[str, Any] | bytes:
    """The next message: binary as is, text parsed as a JSON object."""
    data = await _receive_data(websocket)
    return data if isinstance(data, bytes) else _parse(data)


async def _receive_data(websocket: WebSocket) -> Data:
    try:
        message = await websocket.receive()
    except (WebSocketDisconnect, RuntimeError):
        message = {"type": "websocket.disconnect"}
    if message["type"] == "websocket.disconnect":
        raise DetectionError("the caller left before the stream started", None)
    if message.get("text") is not None:
        return str(message["text"])
    return bytes(message.get("bytes") or b"")


def _parse(data: str) -> dict[str, Any]:
    try:
        message = json.loads(data)
    except ValueError:
        raise DetectionError(f"first messages must be JSON; got {data[:40]!r}",
                             CLOSE_UNSUPPORTED_DATA) from None
    if not isinstance(message, dict):
        raise DetectionError("first messages must be JSON objects", CLOSE_UNSUPPORTED_DATA)
    return message


def _codec_for(message: Mapping[str, Any], expected: str | None) -> type[Codec] | None:
    candidates = [CODECS[expected]] if expected else list(CODECS.values())
    return next((codec for codec in candidates if codec.is_start(message)), None)


def _hint(connected: Mapping[str, Any]) -> str:
    if connected.get("protocol") == "Call":
        return "twilio"
    return "telnyx" if "version" in connected else "exotel"


def _unexpected(message: Mapping[str, Any], expected: str | None) -> str:
    event = message.get("event")
    if event == "start":
        if expected:
            return f"not a {expected} start message (keys: {', '.join(sorted(message))})"
        return "a start message no provider recognises"
    return f"expected a start message, got {event!r}"
