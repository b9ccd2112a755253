"""The zygote: one process that has imported everything once and forks each worker from itself.

Starting a worker as a fresh interpreter costs about a second of CPU (runner, FastAPI, aiortc,
the bot and its libraries), which made each session beyond the prewarmed ones wait and capped
how fast a server could take calls. The pool starts this process instead (`python -m
runner.supervisors.zygote`, settings and secrets in its environment, never in argv); it loads
the config, imports the bot and builds the very app a worker serves, then freezes what it
allocated (so copy-on-write pages stay shared), and says it is ready. For each request, two
sockets passed over the control socket (the worker's and its connection hand-off socket), it
forks: the child serves one session on them (`worker.serve_session`); the zygote reports the
child's pid, and later its exit status, which only a parent can read.

The zygote starts no thread and no event loop, so forking it is safe. A bot file whose import
starts threads cannot be forked safely: the zygote says so and exits, and the pool starts one
that leaves importing the bot to each worker.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import select
import signal
import socket
import struct
import sys
import threading
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from runner.supervisors import wire
from runner.supervisors.orphans import ended_after_parent, killed_with_parent

if TYPE_CHECKING:
    import asyncio

    from fastapi import FastAPI

    from runner.config import Config

FD_ENV = "RUNNER_ZYGOTE_FD"
BOT_ENV = "RUNNER_ZYGOTE_BOT"
MODE_ENV = "RUNNER_ZYGOTE_MODE"
#: Set when the bot's import starts threads: each worker then imports the bot itself.
NO_BOT_ENV = "RUNNER_ZYGOTE_NO_BOT"
#: A fork request: its id, sent with the worker's two sockets as SCM_RIGHTS.
REQUEST = struct.Struct("!Q")
#: Exit status of a worker that failed in a way it could not report.
CRASHED_STATUS = 70
#: Beyond the grace period, how long a worker whose zygote (so whose server) is gone may take
#: to end its session before it is ended (supervisors/orphans.py).
ORPHAN_MARGIN_SECONDS = 3.0

log = logging.getLogger("runner.zygote")

class Preloaded(NamedTuple):
    config: Config
    app: FastAPI | None  # None: the bot's import starts threads, each worker imports it
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None


class ForkServer:
    """The zygote's loop: a fork per request, a report per exit."""

    def __init__(self, control: socket.socket, reference: str, preloaded: Preloaded) -> None:
        self.control = control
        self.reference = reference
        self.config, self.app, self.loop_factory = preloaded
        self._wake_read, self._wake_write = os.pipe()

    def serve(self) -> None:
        """Fork on request and report exits, until the server closes the control socket."""
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        signal.set_wakeup_fd(self._wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # the wakeup fd does the work
        self._send((wire.READY,))
        while True:
            readable, _, _ = select.select([self.control, self._wake_read], [], [])
            if self._wake_read in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_read, 512)
                self._reap()
            if self.control in readable and not self._take_request():
                return

    def _take_request(self) -> bool:
        data, fds, _, _ = socket.recv_fds(self.control, REQUEST.size, 2)
        if not data:
            return False  # the server is gone; workers still running end on their own
        while len(data) < REQUEST.size:  # a request cut in two by the stream (rare)
            more = self.control.recv(REQUEST.size - len(data))
            if not more:
                for fd in fds:
                    os.close(fd)
                return False
            data += more
        (request,) = REQUEST.unpack(data)
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            return True
        pid = os.fork()
        if pid == 0:
            self._be_worker(*fds)
        for fd in fds:
            os.close(fd)
        self._send((wire.FORKED, request, pid))
        return True

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._send((wire.EXITED, pid, os.waitstatus_to_exitcode(status)))

    def _be_worker(self, fd: int, handoff_fd: int) -> None:
        """In the child: drop what was the zygote's, serve one session, exit without unwinding."""
        code = CRASHED_STATUS
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            ended_after_parent(self.config.grace_period + ORPHAN_MARGIN_SECONDS)
            self.control.close()
            os.close(self._wake_read)
            os.close(self._wake_write)
            from runner.supervisors.worker import serve_session

            code = serve_session(self.config, self.app, self.reference, socket.socket(fileno=fd),
                                 socket.socket(fileno=handoff_fd), self.loop_factory)
        except BaseException:
            traceback.print_exc()
        finally:
            logging.shutdown()
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _send(self, record: wire.Record) -> None:
        with contextlib.suppress(OSError):  # the server is gone: it needs no report
            self.control.sendall(wire.encode(record))


def preload(reference: str, mode: str, with_bot: bool) -> Preloaded:
    """Load the config, import what every worker uses and, `with_bot`, build its app."""
    from runner.config import load_config
    from runner.logs import configure_logging
    from runner.selection import select_transports
    from runner.serve import uvicorn_config
    from runner.supervisors import warmup, worker
    from runner.transports import REGISTRY

    config = load_config(mode, {}, env_file=False)  # type: ignore[arg-type]
    configure_logging(config.log_level, config.log_format)
    for module in ("runner.app", *(REGISTRY[choice.name].module
                                      for choice in select_transports(config))):
        importlib.import_module(module)
    loop_factory = uvicorn_config(None, config).get_loop_factory()
    app = None
    if with_bot:
        app = worker.build_app(config, reference)
        warmup.before_fork(app)
    return Preloaded(config, app, loop_factory)


def threads_started() -> list[str]:
    """Threads other than this one: a process with any cannot be forked safely."""
    return [thread.name for thread in threading.enumerate() if thread is not threading.main_thread()]


def _fail(control: socket.socket, record: wire.Record) -> None:
    with contextlib.suppress(OSError):
        control.sendall(wire.encode(record))
    sys.exit(2)


def main() -> None:
    # Ctrl-C or systemd signal the whole process group; the server decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    killed_with_parent()  # the server: without it, no new worker is needed
    control = socket.socket(fileno=int(os.environ.pop(FD_ENV)))
    reference, mode = os.environ.pop(BOT_ENV), os.environ.pop(MODE_ENV)
    with_bot = not os.environ.pop(NO_BOT_ENV, "")
    from runner.errors import UserError

    try:
        preloaded = preload(reference, mode, with_bot)
    except UserError as error:
        _fail(control, (wire.FAILED, str(error)))
    except Exception as error:
        log.exception("the zygote could not start")
        _fail(control, (wire.FAILED, f"the worker failed: {type(error).__name__}: {error}"))
    if threads := threads_started():
        _fail(control, (wire.THREADED, threads))
    gc.collect()
    gc.freeze()  # what the preload made is never collected, so its pages stay shared
    ForkServer(control, reference, preloaded).serve()


if __name__ == "__main__":
    main()
