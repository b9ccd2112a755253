"""The shared part of a synthetic phone caller; telephony.py phrases it per provider.

A caller stands in for the provider end to end. It requests our answer webhook as the provider
does (signed when it holds the provider's secret), opens the media socket the answer names, sends
the provider's messages with its field names, encodings and counters, and checks what the server
sends back against the provider's rules (violations go to `errors`, never raised). It also plays
the provider's buffer: audio plays in real time (after `playback_delay`), a mark is confirmed once
the audio before it has played, and a clear settles pending marks as that provider does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlencode
from xml.etree import ElementTree

import httpx
import websockets

from runner.config import Config
from runner.smoke.callers import Target
from runner.transports.telephony.formats import AudioFormat, Encoding

Data = str | bytes  # what one WebSocket message carries


class Violation(Exception):
    """The server sent something the provider would reject."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def parse_json(data: Data) -> dict[str, Any]:
    if isinstance(data, bytes):
        raise Violation(f"binary message of {len(data)} bytes (the provider accepts JSON text only)")
    try:
        message = json.loads(data)
    except ValueError:
        raise Violation(f"not JSON: {data[:60]!r}") from None
    if not isinstance(message, dict):
        raise Violation("not a JSON object")
    return message


def payload_of(message: Mapping[str, Any]) -> bytes:
    try:
        return base64.b64decode(message["media"]["payload"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise Violation(f"media without a valid base64 payload: {json.dumps(message)[:80]}") from None


def name_at(message: dict[str, Any], *path: str) -> str:
    value: Any = message
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if not isinstance(value, str) or not value:
        raise Violation(f"{message.get('event') or message.get('action')} without a name")
    return value


class PhoneCaller(ABC):
    """One synthetic call. Subclasses phrase the messages; the call logic is shared."""

    provider: ClassVar[str]
    encoding: ClassVar[Encoding] = Encoding.MULAW
    frame_seconds: ClassVar[float] = 0.02
    #: Whether a clear makes the provider confirm the marks it dropped (Twilio, Telnyx).
    confirms_cleared: ClassVar[bool] = False

    default_rate: ClassVar[int] = 8000

    def __init__(self, *, sample_rate: int | None = None, encoding: Encoding | None = None,
                 from_number: str = "+15550100", to_number: str = "+15550199",
                 parameters: Mapping[str, str] | None = None, playback_delay: float = 0.0) -> None:
        self.audio = AudioFormat(encoding or self.encoding, sample_rate or self.default_rate)
        self.from_number, self.to_number = from_number, to_number
        self.parameters = dict(parameters or {})
        self.playback_delay = playback_delay
        self.call_id, self.stream_id, self.account_id = self.new_ids()
        self.heard = bytearray()  # PCM16 at the stream's rate: everything the bot said
        self.first_heard_at: float | None = None
        self.marks: list[str] = []  # marks the server placed, in order
        self.confirmed: list[str] = []  # marks we reported back as played or cleared
        self.clears = 0
        self.errors: list[str] = []
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._counter = itertools.count(1)
        self._chunks = itertools.count(1)
        self._sent_seconds = 0.0
        self._play_end = 0.0
        self._pending: dict[int, tuple[asyncio.TimerHandle, str]] = {}
        self._keys = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ the provider's words

    @abstractmethod
    def new_ids(self) -> tuple[str, str, str]:
        """(call id, stream id, account id) in the provider's formats."""

    @abstractmethod
    def start_messages(self) -> list[Data]:
        """What the provider sends when the socket opens (connected, start)."""

    @abstractmethod
    def media_message(self, payload: bytes) -> Data: ...

    @abstractmethod
    def dtmf_frame(self, digit: str) -> str: ...

    def stop_frame(self) -> str | None:
        """The provider's `stop`, for those that send one before closing."""
        return None

    @abstractmethod
    def confirm_frame(self, name: str) -> str:
        """The provider's report that a mark was reached."""

    def clear_ack(self) -> str | None:
        """The provider's acknowledgement of a clear, where it sends one."""
        return None

    #: The provider's names for what we may send it -> "media" / "mark" / "clear".
    server_events: ClassVar[dict[str, str]] = {"media": "media", "mark": "mark", "clear": "clear"}
    #: Where a mark's name is, and the key that must carry our stream id (None: no such rule).
    mark_name: ClassVar[tuple[str, ...]] = ("mark", "name")
    stream_key: ClassVar[str | None] = None

    def interpret(self, data: Data) -> tuple[str, Any]:
        """A server data as ("media", pcm) / ("mark", name) / ("clear", None); Violation else."""
        message = parse_json(data)
        event = message.get("event")
        kind = self.server_events.get(str(event))
        if kind is None:
            raise Violation(f"event {event!r} is not one {self.provider} accepts")
        if self.stream_key and message.get(self.stream_key) != self.stream_id:
            raise Violation(f"{event} without our {self.stream_key}")
        if kind == "media":
            return kind, self.media_pcm(message)
        if kind == "mark":
            return kind, name_at(message, *self.mark_name)
        return kind, None

    def media_pcm(self, message: dict[str, Any]) -> bytes:
        return self.audio.decode(payload_of(message))

    # ------------------------------------------------------------------ the answer webhook

    webhook_path: ClassVar[str | None] = None

    def webhook_form(self) -> dict[str, str]:
        return {"CallSid": self.call_id, "AccountSid": self.account_id, "From": self.from_number,
                "To": self.to_number, "CallStatus": "in-progress", "Direction": "inbound"}

    def sign(self, config: Config, url: str, form: dict[str, str], body: bytes,
             signing_key: Any) -> dict[str, str]:
        """Headers that sign the webhook as the provider does, when we hold its secret."""
        return {}

    def stream_url_in(self, answer: httpx.Response) -> str:
        """The stream URL of an XML answer (`<Stream url=...>`; Plivo overrides)."""
        stream = ElementTree.fromstring(answer.text).find(".//Stream")
        if stream is None or not stream.get("url"):
            raise Violation(f"answer without <Stream url>: {answer.text[:200]}")
        return str(stream.get("url"))

    async def dial(self, target: Target, *, query: Mapping[str, str] | None = None,
                   signing_key: Any = None) -> tuple[str, dict[str, str]]:
        """Ask our webhook how to connect, as the provider would: (local socket URL, headers)."""
        config = target.config
        path = f"{self.webhook_path}?{urlencode(query)}" if query else str(self.webhook_path)
        form = self.webhook_form()
        body = urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   **self.sign(config, config.base_url() + path, form, body, signing_key)}
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(target.http + path, content=body, headers=headers)
        if answer.status_code != 200:
            raise Violation(f"answer webhook: HTTP {answer.status_code} {answer.text[:200]}")
        return local_url(target, self.stream_url_in(answer)), {}

    # ------------------------------------------------------------------ driving the call

    async def connect(self, url: str, headers: Mapping[str, str] | None = None,
                      opening: bool = True) -> None:
        """Open the media socket and send the opening messages (unless `opening` is False)."""
        self._ws = await websockets.connect(url, additional_headers=dict(headers or {}),
                                            max_size=None)
        self._reader = asyncio.create_task(self._read())
        for data in self.start_messages() if opening else []:
            await self.send(data)

    async def send(self, data: Data) -> None:
        await self._ws.send(data)

    async def send_audio(self, pcm: bytes, realtime: bool = False) -> None:
        """PCM16 at the stream's rate, in the provider's messages; `realtime` paces it."""
        size = int(self.audio.sample_rate * self.frame_seconds) * 2
        started = time.monotonic()
        for index, offset in enumerate(range(0, len(pcm), size)):
            await self.send(self.media_message(self.audio.encode(pcm[offset:offset + size])))
            self._sent_seconds += self.frame_seconds
            if realtime:
                await asyncio.sleep(max(0.0, started + (index + 1) * self.frame_seconds
                                        - time.monotonic()))

    async def send_dtmf(self, digit: str) -> None:
        await self.send(self.dtmf_frame(digit))

    async def hang_up(self) -> None:
        """Leave as the provider does: `stop` where it sends one, then close the socket."""
        stop = self.stop_frame()
        if stop is not None and not self.closed.is_set():
            with contextlib.suppress(websockets.ConnectionClosed):
                await self.send(stop)
        await self.close()

    async def close(self) -> None:
        for handle, _ in self._pending.values():
            handle.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def wait_heard(self, seconds: float, timeout: float = 5.0) -> None:
        """Until the bot has said `seconds` of audio (TimeoutError otherwise)."""
        async with asyncio.timeout(timeout):
            while len(self.heard) < seconds * self.audio.sample_rate * 2:
                await asyncio.sleep(0.01)

    async def wait_closed(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self.closed.wait(), timeout)

    async def wait_confirmed(self, name: str, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while name not in self.confirmed:
                await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ the provider's buffer

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                await self._on_message(data)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code, self.close_reason = self._ws.close_code, self._ws.close_reason or ""
            self.closed.set()

    async def _on_message(self, data: Data) -> None:
        try:
            kind, value = self.interpret(data)
        except Violation as violation:
            self.errors.append(str(violation))
            return
        loop = asyncio.get_running_loop()
        if kind == "media":
            if self.first_heard_at is None:
                self.first_heard_at = time.monotonic()
            self.heard += value
            start = max(self._play_end, loop.time() + self.playback_delay)
            self._play_end = start + len(value) / 2 / self.audio.sample_rate
        elif kind == "mark":
            self.marks.append(value)
            key = next(self._keys)
            due = max(self._play_end, loop.time())
            self._pending[key] = (loop.call_at(due, self._mark_due, key), value)
        elif kind == "clear":
            self.clears += 1
            dropped = [name for _, name in self._pending.values()]
            for handle, _ in self._pending.values():
                handle.cancel()
            self._pending.clear()
            self._play_end = loop.time()
            replies = [self.confirm_frame(name) for name in dropped] if self.confirms_cleared else []
            ack = self.clear_ack()
            for reply in [*replies, *([ack] if ack else [])]:
                await self.send(reply)
            if self.confirms_cleared:
                self.confirmed.extend(dropped)

    def _mark_due(self, key: int) -> None:
        _, name = self._pending.pop(key)
        task = asyncio.ensure_future(self._confirm(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _confirm(self, name: str) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.send(self.confirm_frame(name))
            self.confirmed.append(name)

    def _sequence(self) -> int:
        return next(self._counter)

    def _timestamp_ms(self) -> int:
        return int(self._sent_seconds * 1000)


def local_url(target: Target, url: str) -> str:
    """A stream URL from an answer (public host) pointed at the server under test."""
    public = target.config.base_url(websocket=True)
    if not url.startswith(public):
        raise Violation(f"stream URL {url!r} is not under the public URL {public!r}")
    return target.ws + url[len(public):]
