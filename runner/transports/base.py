"""The Transport every bot sees, whatever carries the bytes.

A transport implementation only moves bytes: it pushes what arrives with `_receive_audio`,
`_receive_message` and `_emit`, reports arrival and departure with `_set_connected` and
`_client_left`, and writes what the bot sends in `_write_audio` / `_write_message`. Queueing,
resampling, pacing, marks and the iterators live here, once, so a bot behaves the same on every
transport (and the bytes may come from a socket or from a pipe to a parent process).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from runner.audio import AudioConverter, AudioFrame
from runner.errors import UserError
from runner.pacing import FRAME_SECONDS, Flag, OutboundAudio

if TYPE_CHECKING:
    from runner.recording import Recorder

log = logging.getLogger("runner.transport")

INBOUND_BUFFER_SECONDS = 1.0
#: Inbound frames that wait for the bot together reach it as one frame, up to this long: a bot
#: that fell behind catches up at once, and each frame it iterates costs a resampler call and a
#: pass through its loop, more than the audio work itself.
JOIN_SECONDS = 0.1
EVENT_BUFFER = 1000
#: App messages waiting for the bot; past this many the oldest are dropped (counted, logged once).
MESSAGE_BUFFER = 1000


class TransportError(UserError):
    """A bot asked a transport for something it cannot do (e.g. video on a phone call)."""


@dataclass(frozen=True)
class CallInfo:
    """The phone call behind a telephony session, as the provider described it."""

    provider: str
    call_id: str | None = None
    stream_id: str | None = None
    account_id: str | None = None
    from_number: str | None = None
    to_number: str | None = None


@dataclass
class SessionInfo:
    """What a bot may know about its session (`transport.session`)."""

    id: str
    kind: str
    started_at: float = field(default_factory=time.time)
    body: Any = None
    call: CallInfo | None = None
    room_url: str | None = None


@dataclass(frozen=True)
class Event:
    """Base of everything `transport.events()` yields."""


@dataclass(frozen=True)
class ClientConnected(Event):
    pass


@dataclass(frozen=True)
class ClientLeft(Event):
    reason: str = ""


@dataclass(frozen=True)
class Dtmf(Event):
    digit: str


@dataclass(frozen=True)
class MarkReached(Event):
    """Audio queued before `mark(name)` was played (or, with `cleared`, dropped by a clear)."""

    name: str
    cleared: bool = False


@dataclass(frozen=True)
class AppMessage(Event):
    data: Any


@dataclass
class TransportStats:
    """Counters the session report, smoke checks and metrics read."""

    frames_in: int = 0
    frames_read: int = 0
    frames_dropped: int = 0
    messages_in: int = 0
    messages_dropped: int = 0
    messages_out: int = 0
    connected_at: float | None = None
    ended_at: float | None = None


T = TypeVar("T")


class _Mailbox(Generic[T]):
    """A bounded queue that keeps the newest items: a slow reader gets fresh data, not a backlog.

    The bound is on the items' total `weight` (one each by default; audio weighs its duration,
    so the freshest second is kept whatever the size of the messages it came in)."""

    def __init__(self, capacity: float, weight: Callable[[T], float] = lambda _: 1.0) -> None:
        self._items: deque[T] = deque()
        self._capacity = capacity
        self._weight = weight
        self._held = 0.0
        self._ready = Flag()
        self._ended = False
        self.dropped = 0

    def put(self, item: T) -> None:
        if self._ended:
            return
        items, weight = self._items, self._weight
        self._held += weight(item)
        items.append(item)
        while self._held > self._capacity and len(items) > 1:
            self._held -= weight(items.popleft())
            self.dropped += 1
        self._ready.set()

    def end(self) -> None:
        self._ended = True
        self._ready.set()

    async def get(self) -> T | None:
        """The next item, or None once ended and drained."""
        items, ready = self._items, self._ready
        while not items:
            if self._ended:
                return None
            ready.clear()
            await ready.wait()
        item = items.popleft()
        self._held -= self._weight(item)
        return item

    def peek(self) -> T | None:
        """The next item without taking it; None when none is waiting."""
        return self._items[0] if self._items else None

    def skip(self) -> None:
        """Take the next item (the one `peek` returned)."""
        self._held -= self._weight(self._items.popleft())


def _duration(frame: AudioFrame) -> float:
    return frame.duration


class Transport(ABC):
    """The API a bot uses. Subclasses implement the wire; see the module docstring."""

    kind: ClassVar[str]
    #: How far ahead of real time `_pace_to` may send: far ends that play from a buffer of their own.
    send_ahead: ClassVar[float] = 0.0
    #: Keys a bot file may set in `transport_options[kind]`, with their types.
    options: ClassVar[Mapping[str, type]] = {}

    def __init__(
        self,
        session: SessionInfo,
        *,
        wire_rate: int,
        wire_channels: int = 1,
        min_chunk_seconds: float = 0.0,
        max_chunk_seconds: float = 0.0,
    ) -> None:
        self.session = session
        self.wire_rate = wire_rate
        self.wire_channels = wire_channels
        self.stats = TransportStats()
        frame_bytes = int(wire_rate * FRAME_SECONDS) * 2 * wire_channels
        self._outbound = OutboundAudio(
            frame_bytes, self._mark_played,
            min_chunk_bytes=int(wire_rate * min_chunk_seconds) * 2 * wire_channels,
            max_chunk_bytes=int(wire_rate * max_chunk_seconds) * 2 * wire_channels,
        )
        self._to_wire = AudioConverter(wire_rate, wire_channels)
        self._audio_in: _Mailbox[AudioFrame] = _Mailbox(INBOUND_BUFFER_SECONDS, _duration)
        self._messages: _Mailbox[Any] = _Mailbox(MESSAGE_BUFFER)
        self._events: _Mailbox[Event] = _Mailbox(EVENT_BUFFER)
        self._connected = asyncio.Event()
        self._ended = asyncio.Event()
        self.end_reason = ""
        self.client_gone = False
        #: `--record`: told of the audio and events as they pass (never waits); None otherwise.
        self.recorder: Recorder | None = None

    def record_to(self, recorder: Recorder) -> None:
        """Tell `recorder` what arrives and what leaves for the wire, at its time, from now on."""
        self.recorder = recorder
        rate, channels = self.wire_rate, self.wire_channels
        self._outbound.on_sent = lambda pcm: recorder.bot_audio(pcm, rate, channels)

    # ----------------------------------------------------------------- the bot's side

    async def audio(self, sample_rate: int = 16000, channels: int = 1) -> AsyncIterator[AudioFrame]:
        """Inbound audio at the rate and channel count the bot asks for; ends when the client leaves."""
        convert, get, stats = AudioConverter(sample_rate, channels).convert, self._audio_in.get, self.stats
        while (frame := await get()) is not None:
            frame, joined = self._join_waiting(frame)
            stats.frames_read += joined
            converted = convert(frame)
            if converted.pcm:
                yield converted

    def _join_waiting(self, frame: AudioFrame) -> tuple[AudioFrame, int]:
        """`frame` joined with the frames of the same format waiting behind it, up to
        JOIN_SECONDS in all; and how many frames that is."""
        mailbox = self._audio_in
        waiting = mailbox.peek()
        if waiting is None:  # the bot keeps up: the usual case where frames come one at a time
            return frame, 1
        rate, channels, parts = frame.sample_rate, frame.channels, [frame.pcm]
        room = int(JOIN_SECONDS * rate) * 2 * channels - len(frame.pcm)
        while (waiting is not None and waiting.sample_rate == rate and waiting.channels == channels
               and len(waiting.pcm) <= room):
            mailbox.skip()
            parts.append(waiting.pcm)
            room -= len(waiting.pcm)
            waiting = mailbox.peek()
        if len(parts) == 1:
            return frame, 1
        return AudioFrame(b"".join(parts), rate, channels), len(parts)

    async def send_audio(self, frame: AudioFrame) -> None:
        """Queue audio to play; any rate. Waits when far ahead of real time (back-pressure)."""
        if not self._ended.is_set():
            await self._outbound.put(self._to_wire.convert(frame).pcm)

    async def clear_audio(self) -> None:
        """Barge-in: drop queued audio now and tell the peer to drop what it buffered."""
        await self._outbound.clear()
        if self.recorder is not None:
            self.recorder.note("clear")
        if not self._ended.is_set():
            await self._write_clear()

    async def mark(self, name: str) -> None:
        """A `MarkReached(name)` event follows when the audio queued so far has been played."""
        if self.recorder is not None:
            self.recorder.note("mark", name=name)
        await self._outbound.mark(name)

    async def send_message(self, data: Any) -> None:
        """Send an app message (data channel, Daily app-message, WebSocket text)."""
        if self._ended.is_set():
            return
        self.stats.messages_out += 1
        if self.recorder is not None:
            self.recorder.note("message_out", data=data)
        await self._write_message(data)

    async def messages(self) -> AsyncIterator[Any]:
        """App messages from the client; ends when the client leaves."""
        while (message := await self._messages.get()) is not None:
            yield message

    async def events(self) -> AsyncIterator[Event]:
        """Typed events (connected, left, DTMF, marks, app messages); ends after `ClientLeft`."""
        while (event := await self._events.get()) is not None:
            yield event

    async def wait_connected(self) -> bool:
        """True once a person is there; False if the session ended before anyone came."""
        waiters = [asyncio.ensure_future(self._connected.wait()),
                   asyncio.ensure_future(self._ended.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return self._connected.is_set()

    async def hangup(self, reason: str = "bot hung up") -> None:
        """End the session from the bot's side (close the peer, leave, end the call)."""
        if self.recorder is not None and not self._ended.is_set():
            self.recorder.note("hangup", reason=reason)
        await self.close(reason)

    async def video(self) -> AsyncIterator[Any]:
        raise TransportError(f"the {self.kind} transport carries no video")
        yield  # pragma: no cover - makes this an async generator

    async def send_video(self, frame: Any) -> None:
        raise TransportError(f"the {self.kind} transport carries no video")

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and not self._ended.is_set()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    # ----------------------------------------------------------------- the runner's side

    @abstractmethod
    async def run(self) -> None:
        """Carry the wire until the client leaves or `close()` is called."""

    async def close(self, reason: str = "session ended") -> None:
        """End the session: stop the pacer, end the iterators, close the wire. Idempotent."""
        if self._ended.is_set():
            return
        self._finish(reason)
        try:
            await self._close_wire(reason)
        except Exception:
            log.debug("closing the %s wire failed", self.kind, exc_info=True)

    async def wait_ended(self) -> None:
        await self._ended.wait()

    def _finish(self, reason: str) -> None:
        self.end_reason = reason
        self.stats.ended_at = time.monotonic()
        self._ended.set()
        self._outbound.close()
        self._event(ClientLeft(reason))
        for mailbox in (self._audio_in, self._messages, self._events):
            mailbox.end()

    # ----------------------------------------------------------------- for implementations

    def _set_connected(self) -> None:
        if not self._connected.is_set():
            self._connected.set()
            self.stats.connected_at = time.monotonic()
            self._event(ClientConnected())

    def _client_left(self, reason: str = "client left") -> None:
        """The person is gone: iterators end once drained; the session decides what follows."""
        if not self._ended.is_set():
            self.client_gone = True
            self._finish(reason)

    def _receive_audio(self, pcm: bytes, sample_rate: int | None = None, channels: int = 1) -> None:
        self.stats.frames_in += 1
        if self.recorder is not None:
            self.recorder.caller_audio(pcm, sample_rate or self.wire_rate, channels)
        mailbox = self._audio_in
        mailbox.put(AudioFrame(pcm, sample_rate or self.wire_rate, channels))
        if mailbox.dropped != self.stats.frames_dropped:
            if not self.stats.frames_dropped:
                log.warning("the bot reads audio slower than it arrives: the oldest is dropped, "
                            "the freshest %g s kept (counted in runner_audio_frames_dropped_total)",
                            INBOUND_BUFFER_SECONDS)
            self.stats.frames_dropped = mailbox.dropped

    def _receive_message(self, data: Any) -> None:
        self.stats.messages_in += 1
        mailbox = self._messages
        mailbox.put(data)
        self._event(AppMessage(data))
        if mailbox.dropped != self.stats.messages_dropped:
            if not self.stats.messages_dropped:
                log.warning("the bot reads app messages slower than they arrive: past %d waiting, "
                            "the oldest are dropped (counted in "
                            "runner_app_messages_dropped_total)", MESSAGE_BUFFER)
            self.stats.messages_dropped = mailbox.dropped

    def _emit(self, event: Event) -> None:
        self._event(event)

    def _event(self, event: Event) -> None:
        self._events.put(event)
        if self.recorder is not None:
            self.recorder.event(event)

    def _pace_to(self, write: Callable[[bytes], None]) -> None:
        """Send queued audio in push mode: `write(bytes)` from the shared clock's tick, until
        the transport closes (or `_outbound.stop()`)."""
        self._outbound.start(write, lead=self.send_ahead)

    async def activity(self) -> object:
        """What changes while audio moves either way (`--idle-timeout` compares it); None where
        runner cannot see the media."""
        return (self.stats.frames_in, self.seconds_sent)

    @property
    def seconds_sent(self) -> float:
        """Bot audio that has left for the wire, in seconds."""
        return self._outbound.bytes_sent / (self.wire_rate * 2 * self.wire_channels)

    @property
    def first_audio_at(self) -> float | None:
        """Monotonic time the bot's first audio left for the wire."""
        return self._outbound.first_audio_at

    def _mark_played(self, name: str, cleared: bool) -> None:
        """Called by the pacer when a mark's audio has left (or was cleared).

        Transports whose far end plays from its own buffer (telephony) override this to send the
        provider's mark and emit `MarkReached` when the provider echoes it.
        """
        self._emit(MarkReached(name, cleared))

    async def _write_clear(self) -> None:
        """Tell the far end to drop audio it buffered. Nothing to do where we do not buffer ahead."""

    @abstractmethod
    async def _write_message(self, data: Any) -> None: ...

    @abstractmethod
    async def _close_wire(self, reason: str) -> None: ...


def check_options(kind: str, options: Mapping[str, Any], allowed: Mapping[str, type]) -> None:
    """Reject unknown or mistyped `transport_options[kind]` keys with a clear message."""
    for key, value in options.items():
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise TransportError(f"transport_options[{kind!r}] has unknown key {key!r} (known: {known})")
        if not isinstance(value, allowed[key]):
            raise TransportError(
                f"transport_options[{kind!r}][{key!r}] must be {allowed[key].__name__}"
            )
