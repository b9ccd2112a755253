"""Sessions: one per connection, each running `bot(transport)` as its own task.

The manager is the only registry of live sessions. A session ends one of four ways (the bot
returns, the client leaves, the bot raises, the time cap is reached); whichever it is, the bot
task, the transport and the registry entry are all gone afterwards, and no other session notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import uuid
import weakref
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from runner.config import Config
from runner.loader import LoadedBot
from runner.logs import current_session
from runner.metrics import Metrics
from runner.transports.base import CallInfo, SessionInfo, Transport

if TYPE_CHECKING:
    from runner.recording import Recorder

log = logging.getLogger("runner.sessions")

IO_CLOSE_TIMEOUT = 2.0
HISTORY = 200
IDLE_CHECK_SECONDS = 1.0


class Outcome(StrEnum):
    OK = "ok"                      # the bot returned
    CLIENT_LEFT = "client_left"    # the client left and the bot returned within the grace period
    BOT_ERROR = "bot_error"        # the bot raised
    BOT_HUNG = "bot_hung"          # the client left and the bot had to be cancelled
    TIMEOUT = "timeout"            # --max-duration or --idle-timeout reached
    SHUTDOWN = "shutdown"          # the server stopped
    CRASHED = "crashed"            # the session's worker process died (--isolation process)


@dataclass(frozen=True)
class SessionRecord:
    """What is kept of a finished session (for smoke checks and /status), without its objects."""

    id: str
    kind: str
    outcome: Outcome | None
    error: str | None
    duration: float
    connect_time: float | None
    frames_in: int
    frames_read: int
    frames_dropped: int
    audio_seconds_out: float
    first_audio_after: float | None
    messages_out: int
    messages_dropped: int = 0


class SessionRefused(Exception):
    """No room for another session (full or draining); answered with 503 / WebSocket 1013."""


class SessionListener(Protocol):
    """Told of each session's start and end (a worker process reports them to its server)."""

    def session_opened(self, session: Session) -> None: ...

    def session_finished(self, record: SessionRecord) -> None: ...


@dataclass
class Session:
    info: SessionInfo
    manager: SessionManager
    transport: Transport | None = None
    task: asyncio.Task[Outcome] | None = None
    started: float = field(default_factory=time.monotonic)
    outcome: Outcome | None = None
    error: BaseException | None = None
    #: Every task created while this session's code ran (the bot's own included).
    tasks: weakref.WeakSet[asyncio.Task[Any]] = field(default_factory=weakref.WeakSet)
    #: A session running in a worker process: how to end it, and what it reported at its end.
    remote_end: Callable[[str], Awaitable[None]] | None = None
    record: SessionRecord | None = None

    @property
    def id(self) -> str:
        return self.info.id

    async def run(self, transport: Transport) -> Outcome:
        """Run the bot on this transport until the session ends; always cleans up."""
        self.transport = transport
        _track_tasks(asyncio.get_running_loop())
        token = current_session.set((self.id, self.info.kind))
        recorder = _start_recording(self.manager.config, self.info, transport)
        owner = _task_owner.set(self.tasks)
        try:
            self.outcome = await self._supervise(transport)
        except asyncio.CancelledError:
            self.outcome = Outcome.SHUTDOWN
            raise
        finally:
            _task_owner.reset(owner)
            await self._cancel_leftover_tasks()
            try:
                if recorder is not None:  # before the end is reported: a worker exits after it
                    await _finish_recording(recorder, self)
            finally:
                current_session.reset(token)
                self.manager._finished(self)
        return self.outcome

    async def _cancel_leftover_tasks(self) -> None:
        """Tasks the bot started and left running would outlive the call: cancel them."""
        current = asyncio.current_task()
        leftover = [task for task in self.tasks if not task.done() and task is not current]
        if not leftover:
            return
        log.warning("session %s left %d task(s) running (%s); cancelling them", self.id,
                    len(leftover), ", ".join(sorted(task.get_name() for task in leftover)))
        for task in leftover:
            task.cancel()
        await asyncio.wait(leftover, timeout=IO_CLOSE_TIMEOUT)

    def start(self, transport: Transport) -> asyncio.Task[Outcome]:
        """Run in the background (for transports whose connection is not a request, e.g. WebRTC)."""
        self.task = asyncio.create_task(self.run(transport), name=f"session:{self.id}")
        self.manager._tasks.add(self.task)
        self.task.add_done_callback(self.manager._tasks.discard)
        return self.task

    def abandon(self) -> None:
        """Release the slot of a session whose transport could not be built."""
        self.manager._finished(self)

    async def _supervise(self, transport: Transport) -> Outcome:
        config = self.manager.config
        bot_task = asyncio.create_task(self._call_bot(transport), name=f"bot:{self.id}")
        io_task = asyncio.create_task(transport.run(), name=f"io:{self.id}")
        watched: set[asyncio.Task[Any]] = {bot_task, io_task}
        idle_task = None
        if config.idle_timeout:
            idle_task = asyncio.create_task(_until_idle(transport, config.idle_timeout))
            watched.add(idle_task)
        try:
            done, _ = await asyncio.wait(
                watched,
                timeout=config.max_duration or None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if bot_task in done and not transport.client_gone:
                outcome = bot_task.result()
            elif bot_task in done:
                outcome = _left(bot_task.result())
            else:
                if io_task in done:
                    transport._client_left(transport.end_reason or "client left")
                    reason = Outcome.CLIENT_LEFT
                else:
                    cause = "idle timeout" if idle_task in done else "max duration reached"
                    log.info("session ended by the server: %s", cause)
                    await transport.hangup(cause)
                    reason = Outcome.TIMEOUT
                outcome = await self._await_bot(bot_task, config.grace_period, reason)
        finally:
            if idle_task is not None:
                idle_task.cancel()
            await transport.close()
            await _finish_task(io_task, IO_CLOSE_TIMEOUT)
            await _cancel_bot(bot_task)
        return outcome

    async def _await_bot(self, bot_task: asyncio.Task[Outcome], grace: float,
                         reason: Outcome) -> Outcome:
        """The client is gone: the bot's iterators have ended; give it `grace` seconds to return."""
        done, _ = await asyncio.wait({bot_task}, timeout=grace)
        if done:
            return _left(bot_task.result()) if reason is Outcome.CLIENT_LEFT else reason
        log.warning("bot did not return %.1f s after the session ended; cancelling it", grace)
        await _cancel_bot(bot_task)
        return Outcome.BOT_HUNG if reason is Outcome.CLIENT_LEFT else reason

    async def _call_bot(self, transport: Transport) -> Outcome:
        try:
            await self.manager.bot.func(transport)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.error = error
            log.error("bot raised %s: %s", type(error).__name__, error, exc_info=error)
            return Outcome.BOT_ERROR
        return Outcome.OK


_task_owner: contextvars.ContextVar[weakref.WeakSet[asyncio.Task[Any]] | None] = (
    contextvars.ContextVar("runner_task_owner", default=None)
)


def _track_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Install (once per loop) a task factory that records each task in its session's set."""
    previous = loop.get_task_factory()
    if getattr(previous, "_runner", False):
        return

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        if previous is not None:
            task = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        owner = _task_owner.get()
        if owner is not None:
            owner.add(task)
        return task

    factory._runner = True  # type: ignore[attr-defined]
    loop.set_task_factory(factory)


def _log_tagged(session: Session, message: str, *args: Any) -> None:
    """An INFO line about `session`, carrying its tag wherever it is logged from."""
    token = current_session.set((session.id, session.info.kind))
    try:
        log.info(message, *args)
    finally:
        current_session.reset(token)


def _summarise(session: Session) -> SessionRecord:
    transport = session.transport
    stats = transport.stats if transport is not None else None
    first_audio = transport.first_audio_at if transport is not None else None
    return SessionRecord(
        id=session.id,
        kind=session.info.kind,
        outcome=session.outcome,
        error=f"{type(session.error).__name__}: {session.error}" if session.error else None,
        duration=time.monotonic() - session.started,
        connect_time=stats.connected_at - session.started if stats and stats.connected_at else None,
        frames_in=stats.frames_in if stats else 0,
        frames_read=stats.frames_read if stats else 0,
        frames_dropped=stats.frames_dropped if stats else 0,
        audio_seconds_out=transport.seconds_sent if transport is not None else 0.0,
        first_audio_after=first_audio - session.started if first_audio else None,
        messages_out=stats.messages_out if stats else 0,
        messages_dropped=stats.messages_dropped if stats else 0,
    )


def _start_recording(config: Config, info: SessionInfo, transport: Transport) -> Recorder | None:
    """`--record`: the session's recorder, attached to its transport (in the process that runs
    the session, a worker's included). A recorder that cannot start never stops the call."""
    if not config.record:
        return None
    from runner.recording import recorder_for

    try:
        recorder = recorder_for(config.record, info)
    except Exception as error:
        log.warning("session %s is not recorded: %s", info.id, error)
        return None
    if recorder is not None:
        transport.record_to(recorder)
    return recorder


async def _finish_recording(recorder: Recorder, session: Session) -> None:
    transport = session.transport
    stats = transport.stats if transport is not None else None
    connected = stats.connected_at - session.started if stats and stats.connected_at else None
    try:
        await recorder.finish({
            "outcome": str(session.outcome) if session.outcome else None,
            "end_reason": transport.end_reason if transport is not None else None,
            "connected_after": round(connected, 3) if connected is not None else None,
            "error": type(session.error).__name__ if session.error else None,
        })
    except Exception as error:  # the recording is a by-product: never the session's end
        log.warning("the recording of session %s could not be finished: %s", session.id, error)


async def _until_idle(transport: Transport, limit: float) -> None:
    """Return once no audio has moved either way for `limit` seconds (never, where the
    transport cannot tell: runner.handover says so at start)."""
    last = await transport.activity()
    if last is None:
        await asyncio.Event().wait()
    quiet_since = time.monotonic()
    while True:
        await asyncio.sleep(min(IDLE_CHECK_SECONDS, limit))
        now = await transport.activity()
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= limit:
            return


async def _cancel_bot(bot_task: asyncio.Task[Outcome]) -> None:
    """Cancel the bot and wait for it, but not for ever: a bot that swallows its cancellation
    is left behind (said once), so its session still ends and its slot is freed."""
    if not bot_task.done():
        bot_task.cancel()
        await asyncio.wait({bot_task}, timeout=IO_CLOSE_TIMEOUT)
    if not bot_task.done():
        log.error("the bot ignored its cancellation for %.0f s; its session ends without it "
                  "(catching asyncio.CancelledError without re-raising keeps a task alive)",
                  IO_CLOSE_TIMEOUT)
        return
    with contextlib.suppress(BaseException):
        bot_task.result()


def _left(bot_result: Outcome) -> Outcome:
    """The client left first: a clean bot return counts as `client_left`, an error stays one."""
    return Outcome.CLIENT_LEFT if bot_result is Outcome.OK else bot_result


async def _finish_task(task: asyncio.Task[Any], timeout: float) -> None:
    """Wait for a task that has been told to stop; cancel it if it does not."""
    if not task.done():
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
    with contextlib.suppress(BaseException):
        await task
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.warning("transport I/O ended with %r", task.exception())


class SessionManager:
    """The registry of live sessions, their limits, and what ended them.

    With `--isolation process` the server's manager runs no bot itself (`local` is False): the
    relay `reserve`s a slot before it hands a connection to a worker, and the worker's report of
    the session it opened is `adopt`ed, so limits, draining, /status and metrics stay the same.
    """

    def __init__(self, config: Config, bot: LoadedBot, metrics: Metrics | None = None) -> None:
        self.config = config
        self.bot = bot
        self.metrics = metrics or Metrics()
        self.active: dict[str, Session] = {}
        self.outcomes: Counter[str] = Counter()
        self.history: deque[SessionRecord] = deque(maxlen=HISTORY)
        self.started_total: Counter[str] = Counter()
        self.draining = False
        self.local = True
        self.reserved = 0
        self.listener: SessionListener | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def full(self) -> bool:
        return len(self.active) + self.reserved >= self.config.max_sessions

    def accepting(self) -> bool:
        return not self.draining and not self.full

    def open(self, kind: str, *, body: Any = None, call: CallInfo | None = None,
             session_id: str | None = None, room_url: str | None = None) -> Session:
        """Reserve a slot for a new session, or raise SessionRefused."""
        if self.draining:
            self.metrics.sessions_refused.labels(kind, "draining").inc()
            raise SessionRefused("the server is draining")
        if self.full:
            self.metrics.sessions_refused.labels(kind, "full").inc()
            raise SessionRefused(f"at the session limit ({self.config.max_sessions})")
        if not self.local:  # a slot freed while the relay answered this connection here
            self.metrics.sessions_refused.labels(kind, "busy").inc()
            raise SessionRefused("the server is busy; try again")
        info = SessionInfo(id=session_id or uuid.uuid4().hex[:12], kind=kind, body=body,
                           call=call, room_url=room_url)
        session = self._register(Session(info=info, manager=self))
        if self.listener is not None:
            self.listener.session_opened(session)
        return session

    def reserve(self) -> None:
        """Hold a slot for a session a worker process is about to open, or raise SessionRefused
        (uncounted: the connection is then answered here, where `open` counts the refusal)."""
        if not self.accepting():
            raise SessionRefused("the server is draining" if self.draining else "full")
        self.reserved += 1
        self._idle.clear()

    def release(self) -> None:
        """Give back a reserved slot no session was opened on."""
        self.reserved -= 1
        self._check_idle()

    def adopt(self, info: SessionInfo, end: Callable[[str], Awaitable[None]],
              reserved: bool) -> Session:
        """Register a session a worker process opened (on a `reserve`d slot if `reserved`)."""
        if reserved:
            self.reserved -= 1
        return self._register(Session(info=info, manager=self, remote_end=end))

    def conclude(self, session: Session, record: SessionRecord) -> None:
        """A session that ran in a worker process ended, as `record` (its worker's) says."""
        session.record = record
        session.outcome = record.outcome
        self._finished(session)

    def _register(self, session: Session) -> Session:
        kind = session.info.kind
        self.active[session.id] = session
        self.started_total[kind] += 1
        self.metrics.sessions_active.labels(kind).inc()
        self._idle.clear()
        if session.remote_end is None:  # a worker logs its own session's start and end
            _log_tagged(session, "session %s started (%s)", session.id, kind)
        return session

    def _finished(self, session: Session) -> None:
        if self.active.pop(session.id, None) is None:
            return
        kind = session.info.kind
        self.metrics.sessions_active.labels(kind).dec()
        record = session.record or _summarise(session)
        self.history.append(record)
        if session.outcome is not None:
            self.outcomes[f"{kind}:{session.outcome}"] += 1
            self._record(record, counted=session.transport is not None or session.record is not None)
            if session.remote_end is None:
                _log_tagged(session, "session %s ended: %s after %.1f s", session.id,
                            session.outcome, record.duration)
        if self.listener is not None:
            self.listener.session_finished(record)
        self._check_idle()

    def _check_idle(self) -> None:
        if not self.active and not self.reserved:
            self._idle.set()

    def _record(self, record: SessionRecord, counted: bool) -> None:
        """Add a finished session's counts to the metrics (once, not per frame); `counted`: it
        had a transport whose counters are meaningful."""
        kind, metrics = record.kind, self.metrics
        metrics.sessions_total.labels(kind, str(record.outcome)).inc()
        metrics.session_duration.labels(kind).observe(record.duration)
        if record.outcome is Outcome.BOT_ERROR:
            metrics.bot_errors.labels(kind).inc()
        if not counted:
            return
        if record.connect_time is not None:
            metrics.time_to_connect.labels(kind).observe(record.connect_time)
        metrics.frames_in.labels(kind).inc(record.frames_in)
        metrics.frames_dropped.labels(kind).inc(record.frames_dropped)
        metrics.messages_dropped.labels(kind).inc(record.messages_dropped)
        metrics.audio_seconds_out.labels(kind).inc(record.audio_seconds_out)

    async def end_all(self, reason: str) -> None:
        """End every running session from the server side (drain timeout): calls are hung up."""
        for session in list(self.active.values()):
            end = session.transport.hangup if session.transport is not None else session.remote_end
            if end is not None:
                with contextlib.suppress(Exception):
                    await end(reason)

    def status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {"id": s.id, "kind": s.info.kind, "age": round(now - s.started, 1)}
            for s in self.active.values()
        ]

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """True when no session is left (within `timeout`)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def shutdown(self) -> None:
        """Cancel every background session and wait for their cleanup."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
