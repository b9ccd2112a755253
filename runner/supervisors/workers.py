"""The pool of worker processes behind a `--isolation process` server.

`--prewarm N` workers wait idle with the bot imported and prewarmed, so a session starts as fast
as in task mode; each is used for one session and the pool refills in the background. A worker
that cannot start (the bot does not import, `prewarm()` raises) is reported once and retried
after a pause, and connections meanwhile get the reason instead of waiting. The pool also
watches its workers: no heartbeat for `--worker-timeout` or more memory than
`--worker-memory-limit`, and the worker is killed. In dev with `--reload`, a saved .py file
replaces the idle workers, so the next session runs the new code and no call is cut.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from pathlib import PurePath
from typing import Any

from runner.config import Config
from runner.sessions import SessionManager
from runner.supervisors.handle import WorkerHandle, describe_exit

log = logging.getLogger("runner.workers")

AUTO_MAX = 4
#: How long a connection may wait for a worker to become ready.
START_SECONDS = 60.0
#: How long after a worker was taken its replacement starts.
REFILL_DELAY_SECONDS = 0.5
#: After a worker failed to start, how long before another is tried.
RETRY_SECONDS = 5.0
WATCH_SECONDS = 0.25
MB = 1 << 20
#: After the end of its session was asked for at shutdown, how long before a worker is killed.
STOP_MARGIN_SECONDS = 3.0
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
        self.starting = 0
        self.generation = 0
        self.stopping = False
        self.broken: str | None = None
        self._retry_at = 0.0
        self._waiters: deque[asyncio.Future[WorkerHandle]] = deque()
        self._owners: dict[str, WorkerHandle] = {}
        self._starts: set[asyncio.Task[Any]] = set()
        self._watchers: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        log.info("sessions run in worker processes; %d kept ready", self.size)
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
                # Its replacement starts once this session has: an import is a second of CPU.
                asyncio.get_running_loop().call_later(REFILL_DELAY_SECONDS, self._fill)
                return handle
        waiter: asyncio.Future[WorkerHandle] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._fill()
        try:
            return await asyncio.wait_for(waiter, START_SECONDS)
        except TimeoutError:
            raise WorkerUnavailable(f"no worker was ready within {START_SECONDS:.0f} s") from None

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
        await asyncio.gather(*self._watchers, *self._starts, return_exceptions=True)
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
            handle = await WorkerHandle.start(self.config, self.reference, self.sessions, self,
                                              self.generation)
        except OSError as error:
            self.starting -= 1
            self._broke(f"cannot start a worker process: {error}")
            return
        self.handles.add(handle)

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
            while self.idle:
                self.idle.popleft().retire()
            self.broken = None
            self._fill()
