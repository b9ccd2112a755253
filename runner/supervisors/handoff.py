"""Process isolation for WebSocket sessions: the worker owns its connection.

The server reads a connection's request head and, when it is a WebSocket upgrade to a session
route, decides what it decides for any session (route, API key, stream token, limits,
draining). Admitted, the accepted TCP socket itself goes to a prewarmed worker (SCM_RIGHTS over
a Unix socket) with the bytes read so far, and the worker serves it with uvicorn's own protocol:
from then on the server does no work for that connection. Everything else goes to uvicorn's own
protocol in the server, with the bytes read so far, untouched. The head is parsed by h11; the
WebSocket protocol is uvicorn's on both sides.

A connection the server refuses (no API key, a bad stream token, full, draining) goes to the
app here, which refuses it exactly as in task mode. When no worker can be had, the reason
reaches the app as uvicorn's per-connection copy of the lifespan state (`scope["state"]`), where
`answer_verdicts` answers it: accepted, then closed with 1011 and the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import unquote

import h11
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("runner.handoff")

#: The most a request head may hold before uvicorn's protocol takes it (and answers it).
MAX_HEAD_BYTES = 16 * 1024
#: A head not complete within this long: the connection is closed (a slow or idle client).
HEAD_SECONDS = 10.0
#: `scope["state"]` key of a verdict the server reached before the app saw the connection.
VERDICT = "runner.verdict"
CLOSE_INTERNAL_ERROR = 1011
_REASON_BYTES = 120


class Dispatcher(Protocol):
    def admit(self, scope: Scope) -> str | None:
        """The session kind to hand to a worker (a slot reserved for it), or None for the app
        here to handle (and refuse, where it is a session route)."""

    async def hand_over(self, kind: str, sock: socket.socket, data: bytes) -> str | None:
        """Pass the connection to a worker; the reason when none could take it (slot released).
        A client that left meanwhile is handed over all the same: its worker sees it gone."""


class HandoffProtocol(asyncio.Protocol):
    """uvicorn's HTTP protocol class in a process-isolated server (see the module docstring).

    Built by uvicorn with its usual arguments; `dispatcher` and `inner` (uvicorn's own HTTP
    protocol class) are bound by `protocol_factory`."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, dispatcher: Dispatcher,
                 inner: Callable[..., asyncio.Protocol]) -> None:
        self._config, self._server_state, self._app_state = config, server_state, app_state
        self._loop = _loop or asyncio.get_event_loop()
        self._dispatcher = dispatcher
        self._inner = inner
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._handing: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self._deadline = self._loop.call_later(HEAD_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not (buffer.startswith(b"GET ") or b"GET ".startswith(buffer)):
            self._serve_here()  # not an upgrade: uvicorn's protocol, from the first byte
            return
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                self._serve_here()  # uvicorn answers what is too large
            return
        scope = upgrade_scope(bytes(buffer[:end + 4]), self._transport)
        decision = self._dispatcher.admit(scope) if scope is not None else None
        if decision is None:
            self._serve_here()
            return
        self._stop_deadline()
        assert self._transport is not None
        self._transport.pause_reading()
        self._handing = self._loop.create_task(self._hand_over(decision))

    def eof_received(self) -> bool | None:
        return None  # close: a head that ends half-way is no request

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()

    async def _hand_over(self, kind: str) -> None:
        transport = self._transport
        assert transport is not None
        problem = await self._dispatcher.hand_over(kind, transport.get_extra_info("socket"),
                                                   bytes(self._buffer))
        if problem is not None:
            self._serve_here(f"cannot start a session: {problem}")
            transport.resume_reading()
            return
        transport.abort()  # our descriptor only: the worker's keeps the connection open

    def _serve_here(self, verdict: str | None = None) -> None:
        """Hand the connection, and what it sent so far, to uvicorn's own protocol here (with
        `verdict`: the reason no worker could take it, for `answer_verdicts`)."""
        self._stop_deadline()
        state = self._app_state if verdict is None else {**self._app_state, VERDICT: verdict}
        protocol = self._inner(config=self._config, server_state=self._server_state,
                               app_state=state, _loop=self._loop)
        transport = self._transport
        assert transport is not None
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._buffer:
            protocol.data_received(bytes(self._buffer))
            self._buffer.clear()

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


class Preread(asyncio.Protocol):
    """In the worker: give uvicorn's protocol the bytes the server read from a handed-over
    connection, before anything read here, then step out of the way."""

    def __init__(self, protocol: asyncio.Protocol, data: bytes) -> None:
        self._protocol = protocol
        self._data = data

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.set_protocol(self._protocol)
        self._protocol.connection_made(transport)
        if self._data:
            self._protocol.data_received(self._data)  # type: ignore[attr-defined]


def protocol_factory(dispatcher: Dispatcher, inner: Callable[..., asyncio.Protocol]) -> Any:
    """The `http=` class for uvicorn.Config: HandoffProtocol bound to `dispatcher`."""

    def build(config: Any, server_state: Any, app_state: dict[str, Any],
              _loop: asyncio.AbstractEventLoop | None = None) -> HandoffProtocol:
        return HandoffProtocol(config, server_state, app_state, _loop, dispatcher=dispatcher,
                               inner=inner)

    return build


def upgrade_scope(head: bytes, transport: asyncio.BaseTransport | None) -> Scope | None:
    """The ASGI WebSocket scope of a request head, as far as routing and admission need it;
    None when it is not a well-formed WebSocket upgrade (uvicorn answers it)."""
    parser = h11.Connection(h11.SERVER)
    try:
        parser.receive_data(head)
        request = parser.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(request, h11.Request) or request.method != b"GET":
        return None
    headers = [(name.lower(), value) for name, value in request.headers]
    upgrade = b"".join(value for name, value in headers if name == b"upgrade")
    if upgrade.strip().lower() != b"websocket":
        return None
    raw_path, _, query = request.target.partition(b"?")
    peer = transport.get_extra_info("peername") if transport is not None else None
    here = transport.get_extra_info("sockname") if transport is not None else None
    return {
        "type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "ws",
        "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path, "root_path": "",
        "query_string": query, "headers": headers,
        "client": tuple(peer[:2]) if isinstance(peer, tuple) else None,
        "server": tuple(here[:2]) if isinstance(here, tuple) else None,
        "subprotocols": [], "state": {},
    }


def answer_verdicts(app: ASGIApp) -> ASGIApp:
    """Wrap the server's app: a WebSocket that carries a verdict is accepted, then closed with
    1011 and the verdict (the reason no worker could take it)."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        verdict = scope.get("state", {}).get(VERDICT) if scope["type"] == "websocket" else None
        if verdict is None:
            await app(scope, receive, send)
            return
        await receive()  # websocket.connect
        with contextlib.suppress(OSError, RuntimeError):
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": CLOSE_INTERNAL_ERROR,
                        "reason": verdict.encode()[:_REASON_BYTES].decode(errors="ignore")})

    return guarded
