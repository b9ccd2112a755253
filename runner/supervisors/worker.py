"""A worker: one session's bot in a process of its own, forked from the zygote (zygote.py).

The zygote has loaded the settings (secrets included, from its environment, never argv) and
built the same app task mode serves; a forked worker runs that app's startup (the bot's
`prewarm()` included) and a warm-up before it says it is ready, so a session never waits for
imports or first-run costs. Then it serves what the server relays: `await app(scope, receive,
send)` exactly as uvicorn would, with receive and send carried over the socket, so every
transport runs here unchanged: the codec, the aiortc peer, the CallClient. Its event loop beats
every second. When its session is over it reports it and exits; a new session always gets a new
process.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import pickle
import socket
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.server import ServerState

from runner.config import Config
from runner.errors import UserError
from runner.heads import HEAD_SECONDS, Preread
from runner.loader import load_bot
from runner.serve import uvicorn_config
from runner.sessions import Session, SessionManager, SessionRecord
from runner.supervisors import wire
from runner.supervisors.warmup import quiet, warm_up

log = logging.getLogger("runner.worker")

HEARTBEAT_SECONDS = 1.0
#: How long a worker that is done waits for the server to close its end of the socket.
HANG_UP_SECONDS = 3.0
#: The largest hand-off message: a connection's id and the bytes the server read from it.
HANDOFF_BYTES = 1 << 20
#: `scope["state"]` key (uvicorn copies the protocol's app state there) of a handed-over connection.
ADOPTED = "runner.adopted"

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

    def deliver(self, message: dict[str, Any]) -> None:
        """A message the server relayed."""
        self.inbox.put_nowait(message)

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        self._writer.write(wire.encode((wire.SEND, self.id, message)))
        await self._writer.drain()


class Adopted:
    """A client connection the server handed over: this process alone reads and writes it."""

    def __init__(self, conn_id: int) -> None:
        self.id = conn_id
        self.started = False  # uvicorn has called the app for it


class Worker:
    """Serves the connections of one session, and tells the server how it went."""

    def __init__(self, config: Config, app: FastAPI, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, handoff: socket.socket) -> None:
        self.config = config
        self.reader = reader
        self.writer = writer
        self.handoff = handoff
        self.app = app
        self.sessions: SessionManager = self.app.state.context.sessions
        self.connections: dict[int, Connection | Adopted] = {}
        self.served = False
        self.finished = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server = ServerState()
        self._uvicorn = uvicorn_config(self._serve_adopted_app, config)
        self._uvicorn.interface = "asgi3"  # a bound method, which uvicorn would take for ASGI 2
        self._uvicorn.load()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        async with self.app.router.lifespan_context(self.app):
            await warm_up(self.app)
            self.sessions.listener = self
            loop.add_reader(self.handoff.fileno(), self._take_connection)
            self._write((wire.READY,))
            beat = self._spawn(self._beat())
            reading = self._spawn(self._read())
            await self.finished.wait()
            loop.remove_reader(self.handoff.fileno())
            beat.cancel()
            reading.cancel()
        self._write((wire.BYE,))

    # ----------------------------------------------------------------- SessionListener

    def session_opened(self, session: Session) -> None:
        self._write((wire.OPENED, _connection.get(), session.info))

    def session_finished(self, record: SessionRecord) -> None:
        self._write((wire.ENDED, record))
        self._check_finished()

    # ----------------------------------------------------------------- the socket

    def _write(self, record: wire.Record) -> None:
        if not self.writer.is_closing():
            self.writer.write(wire.encode(record))

    async def _beat(self) -> None:
        # Several beats per --worker-timeout, so one late beat is never taken for a hang.
        period = min(HEARTBEAT_SECONDS, self.config.worker_timeout / 4 or HEARTBEAT_SECONDS)
        while True:
            self._write((wire.BEAT,))
            await asyncio.sleep(period)

    async def _read(self) -> None:
        while (record := await wire.read_record(self.reader)) is not None:
            op = record[0]
            if op == wire.OPEN:
                self._open(*record[1:])
            elif op == wire.RECEIVE and record[1] in self.connections:
                self.connections[record[1]].deliver(record[2])
            elif op == wire.END:
                self._spawn(self.sessions.end_all(record[1]))
        if self.served:
            await self._orphaned()
        self.finished.set()  # idle and no longer needed (retired, or the server stopped)

    async def _orphaned(self) -> None:
        """The server is gone (killed): end the session as a client leaving would, then exit."""
        log.warning("the server went away; ending this worker's session")
        for connection in self.connections.values():
            if isinstance(connection, Connection):
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
        held = self.app.state.context.held
        if held is not None:
            held.adopt(session_id, body)

    async def _serve(self, connection: Connection, scope: dict[str, Any]) -> None:
        token = _connection.set(connection.id)
        try:
            await self.app(scope, connection.receive, connection.send)
        except Exception:
            log.exception("%s %s failed in the worker", scope.get("method", "WS"), scope["path"])
        finally:
            _connection.reset(token)
            self._done(connection.id)

    # ----------------------------------------------------------------- handed-over connections

    def _take_connection(self) -> None:
        """A client connection the server handed over (runner.supervisors.relay)."""
        try:
            data, fds, _, _ = socket.recv_fds(self.handoff, HANDOFF_BYTES, 1)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data or not fds:
            for fd in fds:
                os.close(fd)
            asyncio.get_running_loop().remove_reader(self.handoff.fileno())
            return  # the server is gone: the control socket says so too
        conn_id, head = pickle.loads(data)
        self.served = True
        adopted = self.connections[conn_id] = Adopted(conn_id)
        self._spawn(self._adopt(adopted, socket.socket(fileno=fds[0]), head))

    async def _adopt(self, adopted: Adopted, sock: socket.socket, head: bytes) -> None:
        """Serve the connection with uvicorn's own protocol, given the bytes the server read."""
        protocol = AutoHTTPProtocol(  # the server read the head already: uvicorn's own
            config=self._uvicorn, server_state=self._server, app_state={ADOPTED: adopted.id})
        transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
            lambda: Preread(protocol, head), sock)
        await asyncio.sleep(HEAD_SECONDS)
        if not adopted.started:  # the client left before its upgrade was complete
            transport.close()
            self._done(adopted.id)

    async def _serve_adopted_app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The app, as uvicorn serves it on a handed-over connection."""
        adopted = self.connections.get(scope.get("state", {}).get(ADOPTED, -1))
        if not isinstance(adopted, Adopted) or adopted.started:
            await self.app(scope, receive, send)
            return
        adopted.started = True
        token = _connection.set(adopted.id)
        try:
            await self.app(scope, receive, send)
        finally:
            _connection.reset(token)
            self._done(adopted.id)

    def _done(self, conn_id: int) -> None:
        if self.connections.pop(conn_id, None) is not None:
            self._write((wire.DONE, conn_id))
            self._check_finished()

    def _check_finished(self) -> None:
        if self.served and not self.connections and not self.sessions.active:
            self.finished.set()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def build_app(config: Config, reference: str) -> FastAPI:
    """The app a worker serves: the bot imported, every selected transport mounted."""
    from runner.app import create_app

    bot = load_bot(reference)
    with quiet():  # the server warned of its configuration once already
        return create_app(config, bot)


async def _work(config: Config, app: FastAPI | None, reference: str, sock: socket.socket,
                handoff: socket.socket) -> str | None:
    """Serve until the session is over; the reason when the worker could not start."""
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    handoff.setblocking(False)
    reason = None
    try:
        await Worker(config, app or build_app(config, reference), reader, writer, handoff).run()
    except UserError as error:
        reason = str(error)
    except Exception as error:
        log.exception("the worker failed")
        reason = f"the worker failed: {type(error).__name__}: {error}"
    if reason is not None:
        writer.write(wire.encode((wire.FAILED, reason)))
    await _hang_up(reader, writer)
    return reason


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close the socket without losing what is still buffered (the session's record, BYE).

    A socket closed with unread data in it resets the connection, and the server would drop
    the records it had not read yet: so send EOF, read (and drop) what the server still sends
    until it closes its end, then close."""
    with contextlib.suppress(ConnectionError, TimeoutError):
        writer.write_eof()
        async with asyncio.timeout(HANG_UP_SECONDS):
            while await reader.read(1 << 16):
                pass
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def serve_session(config: Config, app: FastAPI | None, reference: str, sock: socket.socket,
                  handoff: socket.socket,
                  loop_factory: Callable[[], asyncio.AbstractEventLoop] | None) -> int:
    """A forked worker's life: its own event loop, one session; the exit status.

    `app` is None when the zygote could not import the bot (its import starts threads): the
    worker imports it, as the file is now.
    """
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        failed = runner.run(_work(config, app, reference, sock, handoff))
    return 2 if failed else 0
