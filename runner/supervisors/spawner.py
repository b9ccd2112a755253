"""The server's end of a zygote (zygote.py): start it, ask it for workers, learn how they ended.

A worker is forked, not executed, so it is not the server's child: its exit status reaches the
server from the zygote (EXITED), and `ForkedProcess` offers what the pool used from an asyncio
subprocess (pid, kill, wait). A zygote that dies leaves its workers running their sessions;
they are then watched by pid, and how they ended is no longer known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping

from runner.config import SETTINGS, SETTINGS_BY_NAME, Config, to_environment
from runner.supervisors import wire
from runner.supervisors.zygote import BOT_ENV, FD_ENV, MODE_ENV, NO_BOT_ENV, REQUEST

log = logging.getLogger("runner.workers")

#: How often a worker whose zygote is gone is checked for having ended.
ORPHAN_POLL_SECONDS = 0.2
#: How long a fork request may wait for its answer before the zygote is taken for hung (it
#: answers in milliseconds when it is healthy).
FORK_SECONDS = 10.0
_SETTING_ENVS = {setting.env for setting in SETTINGS}


class ZygoteFailed(Exception):
    """The zygote could not start: the message says why (the bot does not import ...)."""

    def __init__(self, reason: str, threads: list[str] | None = None) -> None:
        super().__init__(reason)
        #: Set when it only failed because the bot's import starts these threads.
        self.threads = threads


def zygote_environment(config: Config, bot_reference: str, fd: int, with_bot: bool,
                       base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The zygote's environment, which its workers inherit: ours without runner's settings, then
    every setting as resolved here (secrets included; argv carries none), in task isolation."""
    environ = {key: value for key, value in base.items() if key not in _SETTING_ENVS}
    environ.update(to_environment(config))
    environ[SETTINGS_BY_NAME["isolation"].env] = "task"
    environ.update({BOT_ENV: bot_reference, MODE_ENV: config.mode, FD_ENV: str(fd)})
    if not with_bot:
        environ[NO_BOT_ENV] = "1"
    return environ


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "ended (how is unknown: its zygote had gone)"
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
        return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


class ZygoteLost(OSError):
    """The zygote died or hung before it answered a fork request: another one may."""


class ForkedProcess:
    """A worker the zygote forked."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        #: None while it runs, and when it ended after its zygote (so nobody could tell how).
        self.returncode: int | None = None
        self.ended = asyncio.Event()

    def kill(self) -> None:
        if not self.ended.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    async def wait(self) -> int | None:
        await self.ended.wait()
        return self.returncode

    def exited(self, returncode: int | None) -> None:
        if not self.ended.is_set():
            self.returncode = returncode
            self.ended.set()

    async def watch_orphaned(self) -> None:
        """Its zygote is gone: notice the end by pid (reaping it where it became our child)."""
        while not self.ended.is_set():
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)  # noqa: ASYNC222 (never blocks)
                if pid:
                    self.exited(os.waitstatus_to_exitcode(status))
                    return
            except ChildProcessError:
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    self.exited(None)
                    return
            await asyncio.sleep(ORPHAN_POLL_SECONDS)


class Zygote:
    """One zygote process, as the server's pool uses it."""

    def __init__(self, process: asyncio.subprocess.Process, control: socket.socket,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.process = process
        self.children: dict[int, ForkedProcess] = {}
        self.retired = False
        self.gone = False
        self._control = control
        self._reader = reader
        self._writer = writer
        self._requests: dict[int, asyncio.Future[int]] = {}
        self._next_request = 0
        self._task: asyncio.Task[None] | None = None
        self._on_gone: Callable[[Zygote], object] = lambda _: None

    @classmethod
    async def start(cls, config: Config, bot_reference: str, with_bot: bool = True) -> Zygote:
        """Start one and wait until it has preloaded; ZygoteFailed says why it could not."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "runner.supervisors.zygote",
                env=zygote_environment(config, bot_reference, theirs.fileno(), with_bot),
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        # Requests go out on `ours` with a file descriptor each; reports come in on a duplicate.
        reader, writer = await asyncio.open_unix_connection(sock=ours.dup())
        zygote = cls(process, ours, reader, writer)
        try:
            await zygote._ready()
        except BaseException:
            zygote._close()
            await process.wait()
            raise
        zygote._task = asyncio.create_task(zygote._read(), name=f"zygote:{process.pid}")
        return zygote

    async def fork(self) -> tuple[ForkedProcess, socket.socket, socket.socket]:
        """A new worker, the server's end of its socket, and of its connection hand-off socket
        (SOCK_SEQPACKET: one message per connection, its descriptor attached)."""
        if self.gone or self.retired:
            raise OSError("the zygote is not taking requests")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        handoff, their_handoff = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        handoff.setblocking(False)
        self._next_request += 1
        request = self._next_request
        forked = self._requests[request] = asyncio.get_running_loop().create_future()
        try:
            socket.send_fds(self._control, [REQUEST.pack(request)],
                            [theirs.fileno(), their_handoff.fileno()])
            async with asyncio.timeout(FORK_SECONDS):
                pid = await forked
        except TimeoutError:
            self._requests.pop(request, None)
            ours.close()
            log.error("the zygote process (pid %d) did not answer a fork request within %g s; "
                      "killing it", self.process.pid, FORK_SECONDS)
            self.gone = True  # no more requests for it; its reader tells the rest
            self.process.kill()
            handoff.close()
            raise ZygoteLost("the zygote did not answer") from None
        except BaseException:
            self._requests.pop(request, None)
            ours.close()
            handoff.close()
            raise
        finally:
            theirs.close()
            their_handoff.close()
        process = self.children[pid] = ForkedProcess(pid)
        return process, ours, handoff

    def retire(self) -> None:
        """Fork no more; exit once the workers it forked have ended (it reports their status)."""
        self.retired = True
        if not self.children:
            self._close()

    def when_closed(self, gone: Callable[[Zygote], object], closed: Callable[[Zygote], object]) -> None:
        """Call `gone` once it takes no more requests, `closed` once its workers have ended too."""
        assert self._task is not None
        self._on_gone = gone
        self._task.add_done_callback(lambda _: closed(self))

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _ready(self) -> None:
        record = await wire.read_record(self._reader)
        if record is None:
            code = await self.process.wait()
            raise ZygoteFailed(f"the worker process exited with status {code} while starting")
        if record[0] == wire.FAILED:
            raise ZygoteFailed(record[1])
        if record[0] == wire.THREADED:
            raise ZygoteFailed("the bot's import starts threads", record[1])

    async def _read(self) -> None:
        while (record := await wire.read_record(self._reader)) is not None:
            if record[0] == wire.FORKED:
                forked = self._requests.pop(record[1], None)
                if forked is not None and not forked.done():
                    forked.set_result(record[2])
            elif record[0] == wire.EXITED:
                child = self.children.pop(record[1], None)
                if child is not None:
                    child.exited(record[2])
                if self.retired and not self.children:
                    self._close()
        self.gone = True
        for forked in self._requests.values():
            if not forked.done():
                forked.set_exception(ZygoteLost("the zygote ended"))
        self._close()
        self._on_gone(self)
        returncode = await self.process.wait()
        if not self.retired:
            log.error("the zygote process (pid %d) %s; another is started for new sessions",
                      self.process.pid, describe_exit(returncode))
        await asyncio.gather(*(child.watch_orphaned() for child in self.children.values()))

    def _close(self) -> None:
        self._writer.close()
        self._control.close()
