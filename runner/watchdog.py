"""Event-loop watchdog: name the bot that blocked the loop, with the stack of what blocked it.

A sync call inside async code (requests.get, time.sleep, a model run without an executor) is the
most common bot bug, and it stalls every session of the process. A heartbeat task ticks every
100 ms on a timer of its own; a thread watches it and, when a tick is late by more than the
threshold, logs once per stall which task was running (so which session) and where.

What no bot did is not warned of (a debug line only): a late loop found running no code but its
own (nothing to name: the process was not scheduled, or a C call held the GIL), and, in the first
seconds, code outside any session (runner's own start-up: imports, a worker's warm-up).
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.runners
import contextlib
import logging
import selectors
import sys
import threading
import time
import traceback
from types import FrameType

from runner.logs import current_session
from runner.metrics import Metrics

log = logging.getLogger("runner.watchdog")

TICK = 0.1
NOT_READY_AFTER_STALL = 5.0
#: Wake this long after a beat would be late, so a stall of just over the threshold is seen.
DUE_MARGIN = 0.002
#: How long after its start a stall outside any session is taken for runner's own start-up.
STARTUP_SECONDS = 10.0
#: Where a loop waits for work: a stall found there was no code's doing.
_LOOP_FILES = frozenset(module.__file__ for module in (asyncio.runners, asyncio.base_events,
                                                      selectors))


class LoopWatchdog:
    def __init__(self, threshold: float, metrics: Metrics) -> None:
        self.threshold = threshold
        self.metrics = metrics
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self.stalls = 0
        self._last_stall = 0.0
        self._started = 0.0

    def start(self) -> None:
        self._started = time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._task = asyncio.create_task(self._heartbeat(), name="runner:watchdog")
        if self.threshold > 0:
            self._thread = threading.Thread(target=self._watch, name="runner-watchdog", daemon=True)
            self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._thread is not None:
            self._thread.join(timeout=1)

    def stalled_recently(self) -> bool:
        """A stall over the threshold ended less than a few seconds ago (readiness turns false)."""
        return bool(self.stalls) and time.monotonic() - self._last_stall < NOT_READY_AFTER_STALL

    async def _heartbeat(self) -> None:
        while True:
            expected = time.monotonic() + TICK
            await asyncio.sleep(TICK)
            now = time.monotonic()
            self.metrics.loop_lag.observe(max(0.0, now - expected))
            self._beat = now

    def _watch(self) -> None:
        warned_for = None
        while not self._stop.wait(self._until_due(warned_for)):
            beat = self._beat
            late = time.monotonic() - beat - TICK
            if late > self.threshold and warned_for != beat:
                warned_for = beat
                if self._report(late):
                    self._last_stall = time.monotonic()
                    self.stalls += 1
                    self.metrics.loop_stalls.inc()

    def _until_due(self, warned_for: float | None) -> float:
        """Sleep until the latest beat would be late: a healthy loop costs the thread one wake-up
        per threshold (a worker process has one of these per session, so it adds up)."""
        beat = self._beat
        if beat == warned_for:  # reported already: look again for the end of this stall
            return self.threshold / 4
        return max(beat + TICK + self.threshold - time.monotonic(), 0.0) + DUE_MARGIN

    def _report(self, late: float) -> bool:
        """Log the stall; whether it was a warning (code blocked the loop) or a debug line."""
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None or frame.f_code.co_filename in _LOOP_FILES:
            log.debug("event loop %.0f ms late, but no code is running on it (the process was "
                      "not scheduled, or a C call held the GIL)", late * 1000)
            return False
        session = _session_in_stack(frame) or self._running_session()
        if session is None and time.monotonic() - self._started < STARTUP_SECONDS:
            log.debug("event loop blocked for %.0f ms by start-up code outside any session",
                      late * 1000)
            return False
        stack = "".join(traceback.format_stack(frame))
        who = f"session {session[0]} ({session[1]})" if session else "code outside any session"
        log.warning(
            "event loop blocked for over %.0f ms by %s; a sync call in async code stalls every "
            "session: use `await asyncio.to_thread(...)` or an async library. Blocked at:\n%s",
            late * 1000, who, stack,
        )
        return True

    def _running_session(self) -> tuple[str, str] | None:
        """The session of the task holding the loop, from its context (Python 3.12+)."""
        running = asyncio.current_task(self._loop) if self._loop is not None else None
        get_context = getattr(running, "get_context", None)
        return get_context().get(current_session.var) if get_context is not None else None


def _session_in_stack(frame: FrameType | None) -> tuple[str, str] | None:
    """The bot's own task runs inside Session._call_bot: find that frame and read its session."""
    from runner.sessions import Session

    target = Session._call_bot.__code__
    while frame is not None:
        if frame.f_code is target:
            session = frame.f_locals.get("self")
            if isinstance(session, Session):
                return session.id, session.info.kind
        frame = frame.f_back
    return None
