"""Real-time pacing of outbound audio: one shared frame clock, one queue per stream.

Bots produce audio in bursts (a TTS sentence arrives faster than real time); people must hear it
at real time, and barge-in must be able to drop what has not been played yet. So audio waits
here, in wire format, and leaves one frame per clock tick. All streams of a process are sent
from the same 20 ms boundaries: a thousand calls cost one timer callback per tick that writes
a frame to each, not a thousand timers and task wake-ups. Only outbound audio is paced: inbound
media is read as it arrives.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("runner.pacing")

FRAME_SECONDS = 0.020


class PacingClock:
    """Shared 20 ms boundaries on the monotonic clock: one timer per boundary for all waiters.

    Each waiter has a future of its own (a shared one would be cancelled with the first task
    cancelled while waiting on it), all resolved by the boundary's one timer. Boundary i is at
    i * period."""

    def __init__(self, period: float = FRAME_SECONDS) -> None:
        self.period = period
        self._waiters: dict[float, list[asyncio.Future[None]]] = {}  # boundary time -> waiters
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tickers: set[Callable[[float], None]] = set()
        self._ticking: asyncio.TimerHandle | None = None
        self._ticked = -1  # the last boundary ticked: never tick one twice

    def now(self) -> float:
        return time.monotonic()

    def _index(self, when: float) -> int:
        return math.ceil(when / self.period - 1e-9)

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the first shared boundary at or after `deadline` (no wait if it has passed)."""
        now = time.monotonic()
        if deadline <= now:
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        at = self._index(deadline) * self.period
        waiters = self._waiters.get(at)
        if waiters is None:
            waiters = self._waiters[at] = []
            loop.call_at(loop.time() + at - now, self._wake, at)
        waiter = loop.create_future()
        waiters.append(waiter)
        await waiter

    def _wake(self, at: float) -> None:
        for waiter in self._waiters.pop(at, ()):
            if not waiter.done():
                waiter.set_result(None)

    def every_tick(self, tick: Callable[[float], None]) -> None:
        """Call `tick(now)` on every boundary, in the clock's one timer callback, until
        `stop(tick)`: a stream that sends each frame costs a call per tick, not a task."""
        if tick in self._tickers:
            return
        self._tickers.add(tick)
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._ticking is None:
            self._plan()

    def stop(self, tick: Callable[[float], None]) -> None:
        self._tickers.discard(tick)
        if not self._tickers and self._ticking is not None:  # nothing to tick: no wake-ups
            self._ticking.cancel()
            self._ticking = None

    def _plan(self) -> None:
        """Set the ticking timer for the next boundary not ticked yet."""
        assert self._loop is not None
        index = max(math.floor(time.monotonic() / self.period) + 1, self._ticked + 1)
        self._ticking = self._loop.call_at(
            self._loop.time() + index * self.period - time.monotonic(), self._tick, index)

    def _tick(self, index: int) -> None:
        """Boundary `index` (the loop's timers may fire a millisecond early: it is still this
        boundary, and the next one is after it, or the first not yet past if we are late)."""
        self._ticking, self._ticked = None, index
        now = max(time.monotonic(), index * self.period)
        for tick in list(self._tickers):
            try:
                tick(now)
            except Exception:
                log.exception("a paced stream failed; it stops sending")
                self.stop(tick)
        if self._ticking is None and self._tickers and self._loop is not None \
                and not self._loop.is_closed():
            self._plan()


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


_clocks: dict[asyncio.AbstractEventLoop, PacingClock] = {}


def shared_clock() -> PacingClock:
    """The frame clock of the running event loop."""
    loop = asyncio.get_running_loop()
    clock = _clocks.get(loop)
    if clock is None:
        for stale in [known for known in _clocks if known.is_closed()]:
            del _clocks[stale]
        clock = _clocks[loop] = PacingClock()
    return clock


class OutboundAudio:
    """Wire-format PCM waiting to be played, plus the marks placed between its bytes.

    Two ways out: `start(write)` pushes chunks to a socket from the shared clock's tick
    (telephony, plain WebSocket, Daily), with no task of its own and no cost while nothing is
    queued; `next_frame()` is pulled by a media track that must return a frame every tick
    (WebRTC), and gets silence when nothing is queued. Providers that need large chunks
    (Exotel: at least 100 ms) set `min_chunk_bytes`; a short tail is padded with silence.
    Providers that play messages of any length set `max_chunk_bytes`: frames due at the same
    tick leave as one chunk (never past a mark, so marks stay exact).
    """

    def __init__(
        self,
        frame_bytes: int,
        on_mark: Callable[[str, bool], None],
        *,
        frame_seconds: float = FRAME_SECONDS,
        max_ahead: float = 2.0,
        min_chunk_bytes: int = 0,
        max_chunk_bytes: int = 0,
    ) -> None:
        self.frame_bytes = frame_bytes
        self.frame_seconds = frame_seconds
        self._chunk = max(min_chunk_bytes, frame_bytes)
        self._gathers = self._chunk > frame_bytes  # a provider that wants chunks of many frames
        # A far end that plays messages of any length gets the frames due at once in one
        # message, up to this many bytes: one message and one write instead of one per frame.
        self._max_chunk = max(max_chunk_bytes, self._chunk)
        self._joins = self._max_chunk > self._chunk
        self._chunk_seconds = frame_seconds * self._chunk / frame_bytes
        # A chunk up to half a frame early leaves on this tick rather than a whole tick late:
        # input jitter does not become output delay, and the schedule still advances a frame
        # per frame, so the stream stays real time.
        self._slack = frame_seconds / 2
        self._on_mark = on_mark
        self._buffer = bytearray()
        self._taken = 0  # bytes ever taken out; marks hold absolute positions against it
        self._marks: deque[tuple[int, str]] = deque()
        self._max_ahead_bytes = max(int(max_ahead / frame_seconds), 1) * frame_bytes
        self._has_room = Flag()
        self._has_room.set()
        self._closed = False
        self._due: float | None = None
        self._write: Callable[[bytes], None] | None = None
        self._lead = 0.0
        self._clock: PacingClock | None = None  # the running loop's clock, once known
        self._on_clock = False  # push mode is ticking
        self._gather_until: float | None = None
        self.bytes_sent = 0
        self.first_audio_at: float | None = None
        #: Told of each chunk as it leaves (before padding), at its time: `--record`'s bot side.
        self.on_sent: Callable[[bytes], None] | None = None

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
        if self._write is not None:
            self._push()

    async def mark(self, name: str) -> None:
        """Report `name` once everything queued so far has left; at once when nothing is queued."""
        if not self._buffer and not self._marks:
            self._on_mark(name, False)
            return
        self._marks.append((self._taken + len(self._buffer), name))

    async def clear(self) -> None:
        """Drop what has not been sent; pending marks are reported as cleared."""
        self._taken += len(self._buffer)
        self._buffer.clear()
        marks, self._marks = list(self._marks), deque()
        self._has_room.set()
        for _, name in marks:
            self._on_mark(name, True)

    def close(self) -> None:
        self._closed = True
        self._buffer.clear()
        self._marks.clear()
        self._has_room.set()
        self.stop()

    def _take(self, size: int) -> bytes:
        buffer = self._buffer
        if len(buffer) <= size:  # the usual case: a bot keeping up leaves one frame at a time
            chunk = bytes(buffer)
            buffer.clear()
        else:
            chunk = bytes(buffer[:size])
            del buffer[:size]
        self._taken += len(chunk)
        if len(buffer) < self._max_ahead_bytes:
            self._has_room.set()
        if chunk:
            self.bytes_sent += len(chunk)
            if self.first_audio_at is None:
                self.first_audio_at = time.monotonic()
            if self.on_sent is not None:
                self.on_sent(chunk)
        return chunk

    def _due_bytes(self, due: float, now: float) -> int:
        """Bytes of the frames due by `now` when the first is due at `due`, within the largest
        chunk and ending at the next mark (a mark is sent after the chunk it follows)."""
        frames = int((now + self._slack + self._lead - due) / self.frame_seconds) + 1
        size = min(frames * self.frame_bytes, self._max_chunk)
        if self._marks:
            size = min(size, max(self._marks[0][0] - self._taken, self.frame_bytes))
        return size

    def _fire_due_marks(self) -> None:
        while self._marks and self._marks[0][0] <= self._taken:
            _, name = self._marks.popleft()
            self._on_mark(name, False)

    # ------------------------------------------------------------------ push mode

    def start(self, write: Callable[[bytes], None], lead: float = 0.0) -> None:
        """Push mode: `write` gets one chunk per tick while audio is queued.

        `lead`: how far ahead of real time the far end may be (one that plays from its own
        buffer, as telephony providers do). Late input arrives in a bunch; without a lead that
        bunch waits here and its delay stays for the rest of the call, with one it drains at once.
        """
        self._write, self._lead = write, lead
        if self._buffer:
            self._push()

    def stop(self) -> None:
        """Push mode ends (the transport is closing); queued audio stays unsent."""
        self._leave_clock()
        self._write = None

    def _leave_clock(self) -> None:
        if self._on_clock and self._clock is not None:
            self._clock.stop(self._tick)
        self._on_clock = False

    def _push(self) -> None:
        """New audio: out at once if it is due (after a pause, or within `lead` of real time);
        what is left waits on the clock and leaves on a tick, with the chunks of the other
        streams. A stream is on the clock only while audio waits: one that sends each frame as
        it is put (a bot keeping up with a far end that buffers) costs the clock nothing."""
        try:
            self._tick(time.monotonic())
        except Exception:  # as the clock does with a failing tick: not the bot's problem
            log.exception("a paced stream failed; it stops sending")
            self.stop()
            return
        if self._buffer and not self._on_clock and self._write is not None and not self._closed:
            if self._clock is None:
                self._clock = shared_clock()
            self._clock.every_tick(self._tick)
            self._on_clock = True

    def _tick(self, now: float) -> None:
        buffer = self._buffer
        while (write := self._write) is not None and not self._closed:
            due = self._due
            if not buffer:
                if self._marks:
                    self._fire_due_marks()
                self._leave_clock()  # nothing waits: off the clock until put() brings audio
                return
            if due is not None and due - self._lead > now + self._slack:
                return  # not due yet
            if self._gathers:
                # Give a large-chunk provider a chunk's time to fill up before padding the tail.
                if len(buffer) < self._chunk:
                    if self._gather_until is None:
                        self._gather_until = now + self._chunk_seconds
                    if now < self._gather_until:
                        return
                self._gather_until = None
            if due is None or due < now - self.frame_seconds:
                due = now  # start (or restart after a stall) right away: no added delay
            size = self._chunk
            if self._joins and len(buffer) > size:
                size = self._due_bytes(due, now)
            chunk = self._take(size)
            if self._gathers and len(chunk) < self._chunk:
                chunk += bytes(self._chunk - len(chunk))
            write(chunk)
            if self._marks:
                self._fire_due_marks()
            self._due = due + self.frame_seconds * len(chunk) / self.frame_bytes

    # ------------------------------------------------------------------ pull mode

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
            self._fire_due_marks()
        if len(chunk) < self.frame_bytes:
            chunk += bytes(self.frame_bytes - len(chunk))
        return chunk
