"""Real-time pacing of outbound audio: one shared frame clock, one queue per stream.

Bots produce audio in bursts (a TTS sentence arrives faster than real time); people must hear it
at real time, and barge-in must be able to drop what has not been played yet. So audio waits
here, in wire format, and leaves one frame per clock tick. All streams of a process wake on the
same 20 ms boundaries, so a thousand calls cost one timer per tick, not a thousand.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

FRAME_SECONDS = 0.020


class FrameClock:
    """Shared 20 ms boundaries on the monotonic clock: one timer per boundary for all waiters.

    Each waiter has a future of its own (a shared one would be cancelled with the first task
    cancelled while waiting on it), all resolved by the boundary's one timer."""

    def __init__(self, period: float = FRAME_SECONDS) -> None:
        self.period = period
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the first shared boundary at or after `deadline` (no wait if it has passed)."""
        now = time.monotonic()
        if deadline <= now:
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        index = math.ceil(deadline / self.period - 1e-9)
        waiters = self._waiters.get(index)
        if waiters is None:
            waiters = self._waiters[index] = []
            loop.call_at(loop.time() + index * self.period - now, self._wake, index)
        waiter = loop.create_future()
        waiters.append(waiter)
        await waiter

    def _wake(self, index: int) -> None:
        for waiter in self._waiters.pop(index, ()):
            if not waiter.done():
                waiter.set_result(None)


class Flag:
    """`asyncio.Event`'s set/clear/wait for the per-frame hand-offs, bound to its loop once.

    `asyncio.Event.wait` asks for the running loop on every wait, and CPython's
    `get_running_loop()` makes a getpid() system call each time: one per frame per hop.
    """

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if not self._value:
            self._value = True
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> None:
        """Until the flag is set (at once if it is)."""
        if self._value:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)


_clocks: dict[asyncio.AbstractEventLoop, FrameClock] = {}


def shared_clock() -> FrameClock:
    """The frame clock of the running event loop."""
    loop = asyncio.get_running_loop()
    clock = _clocks.get(loop)
    if clock is None:
        for stale in [known for known in _clocks if known.is_closed()]:
            del _clocks[stale]
        clock = _clocks[loop] = FrameClock()
    return clock


class OutboundAudio:
    """Wire-format PCM waiting to be played, plus the marks placed between its bytes.

    Two ways out: `run(write)` pushes one chunk per tick to a socket (telephony, plain
    WebSocket); `next_frame()` is pulled by a media track that must return a frame every tick
    (WebRTC), and gets silence when nothing is queued. Providers that need large chunks
    (Exotel: at least 100 ms) set `min_chunk_bytes`; a short tail is padded with silence.
    """

    def __init__(
        self,
        frame_bytes: int,
        on_mark: Callable[[str, bool], Awaitable[None]],
        *,
        frame_seconds: float = FRAME_SECONDS,
        max_ahead: float = 2.0,
        min_chunk_bytes: int = 0,
    ) -> None:
        self.frame_bytes = frame_bytes
        self.frame_seconds = frame_seconds
        self._chunk = max(min_chunk_bytes, frame_bytes)
        self._on_mark = on_mark
        self._buffer = bytearray()
        self._taken = 0  # bytes ever taken out; marks hold absolute positions against it
        self._marks: deque[tuple[int, str]] = deque()
        self._max_ahead_bytes = max(int(max_ahead / frame_seconds), 1) * frame_bytes
        self._has_audio = Flag()
        self._has_room = Flag()
        self._has_room.set()
        self._closed = False
        self._due: float | None = None
        self.bytes_sent = 0
        self.first_audio_at: float | None = None

    @property
    def queued_seconds(self) -> float:
        return len(self._buffer) / self.frame_bytes * self.frame_seconds

    async def put(self, pcm: bytes) -> None:
        """Queue wire-format bytes; waits while more than `max_ahead` seconds are queued."""
        while len(self._buffer) >= self._max_ahead_bytes and not self._closed:
            self._has_room.clear()
            await self._has_room.wait()
        if self._closed or not pcm:
            return
        self._buffer += pcm
        self._has_audio.set()

    async def mark(self, name: str) -> None:
        """Report `name` once everything queued so far has left; at once when nothing is queued."""
        if not self._buffer and not self._marks:
            await self._on_mark(name, False)
            return
        self._marks.append((self._taken + len(self._buffer), name))
        self._has_audio.set()

    async def clear(self) -> None:
        """Drop what has not been sent; pending marks are reported as cleared."""
        self._taken += len(self._buffer)
        self._buffer.clear()
        marks, self._marks = list(self._marks), deque()
        self._has_room.set()
        for _, name in marks:
            await self._on_mark(name, True)

    def close(self) -> None:
        self._closed = True
        self._buffer.clear()
        self._marks.clear()
        self._has_room.set()
        self._has_audio.set()

    def _take(self, size: int) -> bytes:
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._taken += len(chunk)
        if len(self._buffer) < self._max_ahead_bytes:
            self._has_room.set()
        if chunk:
            self.bytes_sent += len(chunk)
            if self.first_audio_at is None:
                self.first_audio_at = time.monotonic()
        return chunk

    async def _fire_due_marks(self) -> None:
        while self._marks and self._marks[0][0] <= self._taken:
            _, name = self._marks.popleft()
            await self._on_mark(name, False)

    async def run(self, write: Callable[[bytes], Awaitable[None]], lead: float = 0.0) -> None:
        """Push mode: send one chunk per tick while audio is queued; idle costs nothing.

        `lead`: how far ahead of real time the far end may be (one that plays from its own
        buffer, as telephony providers do). Late input arrives in a bunch; without a lead that
        bunch waits here and its delay stays for the rest of the call, with one it drains at once.
        """
        clock = shared_clock()
        chunk_seconds = self.frame_seconds * self._chunk / self.frame_bytes
        while not self._closed:
            if not self._buffer:
                await self._fire_due_marks()
                self._due = None
                self._has_audio.clear()
                await self._has_audio.wait()
                continue
            if len(self._buffer) < self._chunk and self._chunk > self.frame_bytes:
                # Give a large-chunk provider a chunk's time to fill up before padding the tail.
                gather_until = clock.now() + chunk_seconds
                while len(self._buffer) < self._chunk and clock.now() < gather_until:
                    await clock.sleep_until(clock.now() + self.frame_seconds)
                if self._closed:
                    return
            now = clock.now()
            if self._due is None or self._due < now - self.frame_seconds:
                self._due = now  # start (or restart after a stall) right away: no added delay
            chunk = self._take(self._chunk)
            if self._chunk > self.frame_bytes and len(chunk) < self._chunk:
                chunk += bytes(self._chunk - len(chunk))
            if chunk:
                await write(chunk)
            if self._marks:
                await self._fire_due_marks()
            self._due += self.frame_seconds * len(chunk) / self.frame_bytes
            await clock.sleep_until(self._due - lead)

    async def next_frame(self) -> bytes:
        """Pull mode: one frame at its due time; silence when nothing is queued."""
        clock = shared_clock()
        now = clock.now()
        if self._due is None or self._due < now - 3 * self.frame_seconds:
            self._due = now
        await clock.sleep_until(self._due)
        self._due += self.frame_seconds
        chunk = self._take(self.frame_bytes)
        if self._marks:
            await self._fire_due_marks()
        if len(chunk) < self.frame_bytes:
            chunk += bytes(self.frame_bytes - len(chunk))
        return chunk
