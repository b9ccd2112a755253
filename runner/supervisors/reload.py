"""`runner dev`'s reloader: a fresh server process whenever a .py file next to the bot changes.

As in uvicorn's reloader, the supervisor binds the listening socket once and hands it to each
server process, so the port never closes: connections made while a new process starts wait in
the socket's backlog (the page reconnects by itself). A process that cannot start, say for a
syntax error in the bot, is reported and the next save tries again. The bot is imported only in
the server processes, never here, so every start sees the code as it is on disk.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
from dataclasses import replace
from pathlib import Path
from types import FrameType

import watchfiles

from runner.config import Config
from runner.errors import UserError
from runner.loader import split_reference
from runner.logs import configure_logging
from runner.selection import select_transports
from runner.serve import bind_socket, serve
from runner.transports import require_available

log = logging.getLogger("runner.reload")

#: How often the watcher wakes without changes, to notice a server process that exited.
POLL_MS = 500
#: Beyond the server's own graceful shutdown (grace period + 2 s), before it is killed.
STOP_MARGIN_SECONDS = 3.0


def run_with_reload(config: Config, bot_reference: str) -> None:
    """Serve `bot_reference`, restarting on change, until Ctrl-C or SIGTERM."""
    require_available([choice.name for choice in select_transports(config)])
    folder = watched_folder(bot_reference)
    sock = bind_socket(config.host, config.port)
    config = replace(config, port=sock.getsockname()[1])
    try:
        Reloader(config, bot_reference, sock, folder).run()
    finally:
        sock.close()


def watched_folder(bot_reference: str) -> Path:
    """The bot file's folder; the current directory for a module reference (`pkg.mod:func`)."""
    target, _ = split_reference(bot_reference)
    path = Path(target)
    return path.resolve().parent if path.suffix == ".py" or path.is_file() else Path.cwd()


def serve_child(config: Config, bot_reference: str, sock: socket.socket) -> None:
    """A server process: serve on the inherited socket until the supervisor sends SIGTERM."""
    from runner.cli import _fail

    # Ctrl-C reaches the whole process group; the supervisor decides when this process stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(config.log_level, config.log_format)
    try:
        serve(config, bot_reference, sock)
    except UserError as error:
        _fail(str(error))


class Reloader:
    def __init__(self, config: Config, bot_reference: str, sock: socket.socket,
                 folder: Path) -> None:
        self.config = config
        self.bot_reference = bot_reference
        self.sock = sock
        self.folder = folder
        self.stopping = threading.Event()
        self.process: multiprocessing.process.BaseProcess | None = None
        self._exit_reported = False

    def run(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        log.info("reloading on changes to .py files in %s (--no-reload turns this off)",
                 self.folder)
        self._start()
        try:
            for changes in watchfiles.watch(
                self.folder, watch_filter=watchfiles.PythonFilter(), stop_event=self.stopping,
                rust_timeout=POLL_MS, yield_on_timeout=True, raise_interrupt=False,
            ):
                if changes:
                    names = sorted({self._shown(path) for _, path in changes})
                    log.info("%s changed; restarting the server", ", ".join(names))
                    self._stop()
                    self._start()
                else:
                    self._report_exit()
        finally:
            self._stop()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(target=serve_child, name="runner-server",
                                       args=(self.config, self.bot_reference, self.sock))
        self.process.start()
        self._exit_reported = False

    def _stop(self) -> None:
        process = self.process
        if process is None or not process.is_alive():
            return
        process.terminate()
        process.join(self.config.grace_period + 2 + STOP_MARGIN_SECONDS)
        if process.is_alive():
            log.warning("the server did not stop in time; killing it")
            process.kill()
            process.join()

    def _report_exit(self) -> None:
        process = self.process
        if process is None or process.is_alive() or self._exit_reported:
            return
        self._exit_reported = True
        log.warning("the server stopped (exit status %s); save a file to start it again",
                    process.exitcode)

    def _shown(self, path: str) -> str:
        try:
            return str(Path(path).relative_to(self.folder))
        except ValueError:
            return path
