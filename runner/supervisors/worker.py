"""A worker process: one session's bot in a fresh interpreter (`python -m runner.supervisors.worker`).

The server's pool starts it with every setting, secrets included, in the environment (never in
argv) and a socket to the server as fd RUNNER_WORKER_FD. It imports the bot, builds the same app
as task mode and runs its startup (the bot's `prewarm()` included) before it says it is ready, so
a session never waits for imports. Then it serves what the server relays: `await app(scope,
receive, send)` exactly as uvicorn would, with receive and send carried over the socket, so every
transport runs here unchanged: the codec, the aiortc peer, the CallClient. Its event loop beats
every second. When its session is over it reports it and exits; a new session always gets a new
process, which imports the bot file as it is now.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from runner.config import Config, load_config
from runner.errors import UserError
from runner.loader import LoadedBot, load_bot
from runner.logs import configure_logging
from runner.sessions import Session, SessionManager, SessionRecord
from runner.supervisors import wire
from runner.supervisors.warmup import quiet, warm_up

log = logging.getLogger("runner.worker")

FD_ENV = "RUNNER_WORKER_FD"
BOT_ENV = "RUNNER_WORKER_BOT"
MODE_ENV = "RUNNER_WORKER_MODE"
HEARTBEAT_SECONDS = 1.0
#: How long a `/start` body handed over with its offer stays held (it is used at once).
HELD_SECONDS = 30.0

_connection: contextvars.ContextVar[int | None] = contextvars.ContextVar("runner_worker_conn",
                                                                         default=None)


class Connection:
    """One relayed connection: ASGI receive and send over the socket."""

    def __init__(self, conn_id: int, scope_type: str, writer: asyncio.StreamWriter) -> None:
        self.id = conn_id
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.disconnect = ({"type": "websocket.disconnect", "code": 1006}
                           if scope_type == "websocket" else {"type": "http.disconnect"})
        self._writer = writer

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        self._writer.write(wire.encode((wire.SEND, self.id, message)))
        await self._writer.drain()


class Worker:
    """Serves the relayed connections of one session, and tells the server how it went."""

    def __init__(self, config: Config, bot: LoadedBot, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        from runner.server import create_app

        self.config = config
        self.reader = reader
        self.writer = writer
        with quiet():  # the server warned of its configuration once already
            self.app = create_app(config, bot)
        self.sessions: SessionManager = self.app.state.context.sessions
        self.connections: dict[int, Connection] = {}
        self.served = False
        self.finished = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> None:
        async with self.app.router.lifespan_context(self.app):
            await warm_up(self.app)
            self.sessions.listener = self
            self._write((wire.READY,))
            beat = self._spawn(self._beat())
            reading = self._spawn(self._read())
            await self.finished.wait()
            beat.cancel()
            reading.cancel()
        self._write((wire.BYE,))
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    # ----------------------------------------------------------------- SessionListener

    def session_opened(self, session: Session) -> None:
        self._write((wire.OPENED, _connection.get(), session.info))

    def session_finished(self, record: SessionRecord) -> None:
        self._write((wire.RECORD, record))
        self._check_finished()

    # ----------------------------------------------------------------- the socket

    def _write(self, frame: wire.Frame) -> None:
        if not self.writer.is_closing():
            self.writer.write(wire.encode(frame))

    async def _beat(self) -> None:
        # Several beats per --worker-timeout, so one late beat is never taken for a hang.
        period = min(HEARTBEAT_SECONDS, self.config.worker_timeout / 4 or HEARTBEAT_SECONDS)
        while True:
            self._write((wire.BEAT,))
            await asyncio.sleep(period)

    async def _read(self) -> None:
        while (frame := await wire.read_frame(self.reader)) is not None:
            op = frame[0]
            if op == wire.OPEN:
                self._open(*frame[1:])
            elif op == wire.RECEIVE and frame[1] in self.connections:
                self.connections[frame[1]].inbox.put_nowait(frame[2])
            elif op == wire.END:
                self._spawn(self.sessions.end_all(frame[1]))
        if self.served:
            await self._orphaned()
        self.finished.set()  # idle and no longer needed (retired, or the server stopped)

    async def _orphaned(self) -> None:
        """The server is gone (killed): end the session as a client leaving would, then exit."""
        log.warning("the server went away; ending this worker's session")
        for connection in self.connections.values():
            connection.inbox.put_nowait(connection.disconnect)
        await self.sessions.end_all("server gone")
        await self.sessions.wait_idle(self.config.grace_period + 3)

    # ----------------------------------------------------------------- connections

    def _open(self, conn_id: int, scope: dict[str, Any], held: tuple[str, Any] | None,
              first: list[dict[str, Any]]) -> None:
        self.served = True
        connection = Connection(conn_id, scope["type"], self.writer)
        for message in first:
            connection.inbox.put_nowait(message)
        self.connections[conn_id] = connection
        if held is not None:
            self._hold(*held)
        self._spawn(self._serve(connection, {**scope, "state": {}}))

    def _hold(self, session_id: str, body: Any) -> None:
        """A `/start` body the server held: its offer has come, so the session starts here."""
        from runner.transports.webrtc.registry import Pending

        pending = Pending(time.monotonic() + HELD_SECONDS, body)
        self.app.state.webrtc.registry.put_back(session_id, pending)

    async def _serve(self, connection: Connection, scope: dict[str, Any]) -> None:
        token = _connection.set(connection.id)
        try:
            await self.app(scope, connection.receive, connection.send)
        except Exception:
            log.exception("%s %s failed in the worker", scope.get("method", "WS"), scope["path"])
        finally:
            _connection.reset(token)
            del self.connections[connection.id]
            self._write((wire.DONE, connection.id))
            self._check_finished()

    def _check_finished(self) -> None:
        if self.served and not self.connections and not self.sessions.active:
            self.finished.set()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _work(config: Config, bot: LoadedBot, sock: socket.socket) -> str | None:
    """Serve until the session is over; the reason when the worker could not start."""
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    reason = None
    try:
        await Worker(config, bot, reader, writer).run()
    except UserError as error:
        reason = str(error)
    except Exception as error:
        log.exception("the worker failed")
        reason = f"the worker failed: {type(error).__name__}: {error}"
    if reason is not None:
        writer.write(wire.encode((wire.FAILED, reason)))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
    writer.close()
    return reason


def _fail(sock: socket.socket, reason: str) -> None:
    """Tell the server why this worker cannot serve (it logs it once), then exit."""
    with contextlib.suppress(OSError):
        sock.sendall(wire.encode((wire.FAILED, reason)))
    sys.exit(2)


def main() -> None:
    # Ctrl-C in a terminal, or systemd stopping the unit, signals every process of the group; the
    # server decides when a worker stops (it drains first), and a closed socket or SIGKILL ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(os.environ.pop(FD_ENV)))
    reference, mode = os.environ.pop(BOT_ENV), os.environ.pop(MODE_ENV)
    try:
        config = load_config(mode, {}, env_file=False)  # type: ignore[arg-type]
        configure_logging(config.log_level, config.log_format)
        bot = load_bot(reference)
    except UserError as error:
        _fail(sock, str(error))
    from runner.drain import uvicorn_config

    loop_factory = uvicorn_config(None, config).get_loop_factory()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        failed = runner.run(_work(config, bot, sock))
    sys.exit(2 if failed else 0)


if __name__ == "__main__":
    main()
