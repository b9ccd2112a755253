"""The pool of worker processes behind a `--isolation process` server.

Workers are forked from a zygote that imported runner and the bot once (zygote.py), so a new
one costs its own startup only. `--prewarm N` workers wait idle with the bot prewarmed, so a
session starts as fast as in task mode; each is used for one session and the pool refills in the
background. A worker that cannot start (the bot does not import, `prewarm()` raises) is reported
once and retried after a pause, and connections meanwhile get the reason instead of waiting. The
pool also watches its workers: no heartbeat for `--worker-timeout` or more memory than
`--worker-memory-limit`, and the worker is killed. In dev with `--reload`, a saved .py file
replaces the zygote and the idle workers, so the next session runs the new code and no call is
cut.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from pathlib import PurePath
from typing import Any

from runner.config import Config
from runner.sessions import SessionManager
from runner.supervisors.handle import WorkerHandle
from runner.supervisors.hangups import HangupWatch
from runner.supervisors.spawner import ForkedProcess, Zygote, ZygoteFailed, ZygoteLost, describe_exit

log = logging.getLogger("runner.workers")

AUTO_MAX = 4
#: How long a connection may wait for a worker to become ready.
START_SECONDS = 60.0
#: How long after a worker was taken its replacement starts.
REFILL_DELAY_SECONDS = 0.1
#: After a worker failed to start, how long before another is tried.
RETRY_SECONDS = 5.0
WATCH_SECONDS = 0.25
MB = 1 << 20
#: After the end of its session was asked for at shutdown, how long before a worker is killed.
STOP_MARGIN_SECONDS = 3.0
#: Beyond the grace period, how long after its client left a session may take to end (its bot's
#: cancellation, the transport's close) before its worker is killed.
HANGUP_MARGIN_SECONDS = 3.0
#: How long a burst of file changes may last before the idle workers are replaced.
RELOAD_DEBOUNCE_MS = 300


class WorkerUnavailable(Exception):
    """No worker can take a connection. The message says why in words fit for any client;
    `detail` (the import error, with the bot's path) is for the log, and for clients in dev."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


BROKEN = "the bot cannot start (the server log says why)"


def pool_size(config: Config) -> int:
    if config.prewarm == "auto":
        return min(AUTO_MAX, os.cpu_count() or 1)
    return int(config.prewarm)


class WorkerPool:
    def __init__(self, config: Config, bot_reference: str, sessions: SessionManager) -> None:
        self.config = config
        self.reference = bot_reference
        self.sessions = sessions
        self.size = pool_size(config)
        self.max_starting = max(self.size, os.cpu_count() or 1, 2)
        self.idle: deque[WorkerHandle] = deque()
        self.handles: set[WorkerHandle] = set()
        self.hangups = HangupWatch(self._client_left)
        self.starting = 0
        self.generation = 0
        self.stopping = False
        self.broken: str | None = None
        self.taken = 0  # workers given a session so far
        self._retry_at = 0.0
        self._waiters: deque[asyncio.Future[WorkerHandle]] = deque()
        self._owners: dict[str, WorkerHandle] = {}
        self._starts: set[asyncio.Task[Any]] = set()
        self._watchers: list[asyncio.Task[Any]] = []
        self._zygote: Zygote | None = None
        self._zygote_start: asyncio.Task[Zygote] | None = None
        self._zygotes: set[Zygote] = set()
        self._bot_starts_threads = False

    async def start(self) -> None:
        log.info("sessions run in worker processes; %d kept ready", self.size)
        self._start_one_zygote()  # even with none kept ready, so no session waits for its imports
        self._fill()
        self._watchers.append(asyncio.create_task(self._watch(), name="workers:watch"))
        if self.config.mode == "dev" and self.config.reload:
            self._watchers.append(asyncio.create_task(self._reload(), name="workers:reload"))

    async def acquire(self) -> WorkerHandle:
        """A ready worker for a new session (waiting for one to start if none is idle)."""
        if self.stopping:
            raise WorkerUnavailable("the server is stopping")
        if self.broken is not None and time.monotonic() < self._retry_at:
            raise WorkerUnavailable(BROKEN, self.broken)
        while self.idle:
            handle = self.idle.popleft()
            if handle.alive:
                handle.assigned = True
                self.taken += 1
                # Its replacement (10-40 ms of CPU) starts once this session has.
                asyncio.get_running_loop().call_later(REFILL_DELAY_SECONDS, self._fill)
                return handle
        waiter: asyncio.Future[WorkerHandle] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._fill()
        try:
            return await asyncio.wait_for(waiter, START_SECONDS)
        except TimeoutError:
            raise WorkerUnavailable(f"no worker was ready within {START_SECONDS:.0f} s") from None

    @property
    def zygote(self) -> Zygote | None:
        """The zygote new workers are forked from (None until it has started)."""
        return self._zygote

    def owner(self, pc_id: str) -> WorkerHandle | None:
        """The worker whose WebRTC peer connection is `pc_id`."""
        handle = self._owners.get(pc_id)
        return handle if handle is not None and handle.alive else None

    def learn(self, pc_id: str, handle: WorkerHandle) -> None:
        if handle.returncode is None:
            handle.learn(pc_id)
            self._owners[pc_id] = handle

    async def stop(self) -> None:
        """Retire the idle workers; ask the busy ones to end their sessions, then kill them."""
        self.stopping = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(WorkerUnavailable("the server is stopping"))
        for task in self._watchers:
            task.cancel()
        if self._zygote_start is not None:
            self._zygote_start.cancel()
        await asyncio.gather(*self._watchers, *self._starts, return_exceptions=True)
        if self._zygote_start is not None:
            await asyncio.gather(self._zygote_start, return_exceptions=True)
        handles = list(self.handles)
        for handle in handles:
            handle.stopping = True
            if handle.assigned:
                await handle.end("server shutting down")
            else:
                handle.retire()
        waits = [asyncio.ensure_future(handle.exited.wait()) for handle in handles]
        if waits:
            _, late = await asyncio.wait(waits, timeout=self.config.grace_period
                                         + STOP_MARGIN_SECONDS)
            for task in late:
                task.cancel()
        for handle in handles:
            handle.kill("was killed: the server stopped")
        await asyncio.gather(*(handle.exited.wait() for handle in handles))
        zygotes = list(self._zygotes)
        for zygote in zygotes:
            zygote.retire()
        await asyncio.gather(*(zygote.wait_closed() for zygote in zygotes))
        self.hangups.close()

    # ----------------------------------------------------------------- PoolEvents

    def worker_ready(self, handle: WorkerHandle) -> None:
        self.starting -= 1
        if self.broken is not None:
            log.info("workers start again")
            self.broken = None
        if self.stopping or handle.generation != self.generation:
            handle.retire()
        else:
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    handle.assigned = True
                    self.taken += 1
                    waiter.set_result(handle)
                    break
            else:
                self.idle.append(handle)
        self._fill()

    def worker_exited(self, handle: WorkerHandle) -> None:
        self.handles.discard(handle)
        for pc_id in handle.pc_ids:
            if self._owners.get(pc_id) is handle:
                del self._owners[pc_id]
        if handle in self.idle:
            self.idle.remove(handle)
            if not handle.retired and handle.kill_reason is None:  # a kill was logged already
                log.warning("an idle worker (pid %d) %s", handle.pid,
                            describe_exit(handle.returncode or 0))
        if not handle.ready:
            self.starting -= 1
            if not handle.retired and not self.stopping:
                self._broke(handle.failure or "a worker process "
                            f"{describe_exit(handle.returncode or 0)} while starting")
        self._fill()

    # ----------------------------------------------------------------- keeping the pool full

    def _fill(self) -> None:
        if self.stopping:
            return
        if self.broken is not None:
            if time.monotonic() >= self._retry_at and not self.starting:
                self._start_one()  # one at a time until one starts again
            return
        waiting = sum(not waiter.done() for waiter in self._waiters)
        wanted = self.size + waiting - len(self.idle) - self.starting
        for _ in range(max(0, min(wanted, self.max_starting - self.starting))):
            self._start_one()

    def _start_one(self) -> None:
        self.starting += 1
        task = asyncio.create_task(self._start())
        self._starts.add(task)
        task.add_done_callback(self._starts.discard)

    async def _start(self) -> None:
        try:
            generation, process, sock, handoff = await self._fork()
        except ZygoteFailed as failed:
            self.starting -= 1
            self._broke(str(failed))
            return
        except OSError as error:
            self.starting -= 1
            self._broke(f"cannot start a worker process: {error}")
            return
        handle = await WorkerHandle.open(process, sock, handoff, self.sessions, self, generation)
        self.handles.add(handle)

    async def _fork(self) -> tuple[int, ForkedProcess, socket.socket, socket.socket]:
        """A new worker of the current code (its generation, process and sockets)."""

        async def from_current_zygote() -> tuple[int, ForkedProcess, socket.socket, socket.socket]:
            generation, zygote = await self._ready_zygote()
            return (generation, *await zygote.fork())

        try:
            return await from_current_zygote()
        except ZygoteLost:  # it died or hung under this request: ask its successor, once
            return await from_current_zygote()

    async def _ready_zygote(self) -> tuple[int, Zygote]:
        """The zygote of the current code, started first if there is none (one start for all)."""
        while (zygote := self._zygote) is None or zygote.gone or zygote.retired:
            await asyncio.shield(self._start_one_zygote())
        return self.generation, zygote

    async def _start_zygote(self) -> Zygote:
        while True:
            generation = self.generation
            try:
                zygote = await Zygote.start(self.config, self.reference,
                                            with_bot=not self._bot_starts_threads)
            except ZygoteFailed as failed:
                if failed.threads is None or self._bot_starts_threads:
                    raise
                self._bot_starts_threads = True
                log.warning("importing %s starts threads (%s), and a process with threads cannot "
                            "be forked safely: each worker imports the bot itself, so a worker "
                            "takes longer to start", self.reference, ", ".join(failed.threads))
                continue
            self._zygotes.add(zygote)
            zygote.when_closed(self._zygote_gone, self._zygotes.discard)
            if generation == self.generation and not self.stopping:
                self._zygote = zygote
                return zygote
            zygote.retire()  # the code changed while it started

    def _broke(self, reason: str) -> None:
        if reason != self.broken:
            log.error("cannot start a worker for new sessions: %s", reason)
        self.broken = reason
        self._retry_at = time.monotonic() + RETRY_SECONDS
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(WorkerUnavailable(BROKEN, reason))
        asyncio.get_running_loop().call_later(RETRY_SECONDS, self._fill)

    def _zygote_gone(self, zygote: Zygote) -> None:
        if zygote is self._zygote and not self.stopping:  # it died: have the next one ready
            self._zygote = None
            for handle in [h for h in self.idle if h.pid in zygote.children]:
                self.idle.remove(handle)  # nobody could say how it ended: replace it
                handle.retire()
            self._start_one_zygote()
            self._fill()

    def _start_one_zygote(self) -> asyncio.Task[Zygote]:
        if self._zygote_start is None or self._zygote_start.done():
            self._zygote_start = asyncio.create_task(self._start_zygote(), name="workers:zygote")
            self._zygote_start.add_done_callback(_retrieved)
        return self._zygote_start

    # ----------------------------------------------------------------- watching

    async def _watch(self) -> None:
        """Kill workers whose loop stopped beating or whose memory is over the limit."""
        timeout, limit = self.config.worker_timeout, self.config.worker_memory_limit
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            now = time.monotonic()
            for handle in [h for h in self.handles if h.ready and h.returncode is None]:
                if timeout and now - handle.last_beat > timeout:
                    self._kill(handle, f"was killed: its event loop sent no heartbeat for "
                                       f"{timeout:g} s (--worker-timeout)")
                elif limit and (rss := handle.rss()) > limit * MB:
                    self._kill(handle, f"was killed: it used {rss / MB:.0f} MB, over "
                                       f"--worker-memory-limit {limit} MB")
                    if not handle.assigned:  # prewarmed, idle and over: every worker would be
                        self._broke(f"an idle worker (the bot imported and prewarmed) uses "
                                    f"{rss / MB:.0f} MB, over --worker-memory-limit {limit} MB")

    def _client_left(self, key: object) -> None:
        """A handed-over connection's client has gone: its session must end within the grace
        period, whatever its worker is doing, or the worker is killed and the slot freed."""
        handle, conn_id = key  # type: ignore[misc]
        allowed = self.config.grace_period + HANGUP_MARGIN_SECONDS

        def overdue() -> None:
            if conn_id in handle.connections and handle.returncode is None:
                self._kill(handle, f"was killed: its client left {allowed:g} s ago and its "
                                   "session had not ended (--grace-period)")

        asyncio.get_running_loop().call_later(allowed, overdue)

    def _kill(self, handle: WorkerHandle, reason: str) -> None:
        log.warning("worker %d %s", handle.pid, reason)
        handle.kill(reason)

    async def _reload(self) -> None:
        """Dev: after a change, new sessions get workers that imported the file as saved."""
        import watchfiles

        from runner.supervisors.reload import watched_folder

        folder = watched_folder(self.reference)
        log.info("a saved .py file in %s takes effect at the next session; running sessions "
                 "keep their code", folder)
        async for changes in watchfiles.awatch(folder, watch_filter=watchfiles.PythonFilter(),
                                               debounce=RELOAD_DEBOUNCE_MS):
            names = ", ".join(sorted({str(PurePath(path).relative_to(folder))
                                      for _, path in changes}))
            log.info("%s changed; the next session runs the new code", names)
            self.generation += 1
            if self._zygote is not None:
                self._zygote.retire()
            while self.idle:
                self.idle.popleft().retire()
            self.broken = None
            self._fill()


def _retrieved(task: asyncio.Task[Any]) -> None:
    """A zygote start nobody waits for may fail: the next worker start reports why."""
    if not task.cancelled():
        task.exception()
