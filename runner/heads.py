"""Request heads: read with a size cap and a deadline before uvicorn's own protocol takes over.

uvicorn's default HTTP protocol (httptools) bounds neither how long a request head may take nor
how large it may grow, so a client could hold a connection and memory by sending a head slowly
or without end. Every connection's first head is read here first, parsed by h11: too large or
with too many headers gets 431 (400 when malformed), one not complete within HEAD_SECONDS is
closed. Then the connection, with every byte read so far, goes to uvicorn's own protocol, or,
where the server runs sessions in worker processes, a WebSocket session goes to its worker
(`Router`, see supervisors/relay.py). Later requests on a kept-alive connection are
uvicorn's alone.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import unquote

import h11

#: The most a request head may hold.
MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 100
#: A head not complete within this long: the connection is closed (a slow or idle client).
HEAD_SECONDS = 10.0
#: `scope["state"]` key of a verdict the server reached before the app saw the connection.
VERDICT = "runner.verdict"


class Router(Protocol):
    """Where a connection goes once its head is read: None for uvicorn's protocol here, or a
    coroutine that takes the connection (its socket and the bytes read), returning None when it
    did, or a verdict (a reason) for the app here to answer with."""

    def route(self, scope: dict[str, Any]) -> Callable[[socket.socket, bytes],
                                                       Awaitable[str | None]] | None: ...


class HeadProtocol(asyncio.Protocol):
    """uvicorn's `http=` protocol class (built by `protocol_factory` with uvicorn's arguments)."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, router: Router | None,
                 inner: Callable[..., asyncio.Protocol]) -> None:
        self._config, self._server_state, self._app_state = config, server_state, app_state
        self._loop = _loop or asyncio.get_event_loop()
        self._router = router
        self._inner = inner
        self._buffer = bytearray()
        self._transport: Any = None  # asyncio's or uvloop's transport (no common base class)
        self._deadline: asyncio.TimerHandle | None = None
        self._taking: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._deadline = self._loop.call_later(HEAD_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        end = buffer.find(b"\r\n\r\n")
        if end < 0 and len(buffer) <= MAX_HEAD_BYTES:
            return
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        try:
            parser.receive_data(bytes(buffer[:end + 4] if end >= 0 else buffer))
            request = parser.next_event()
        except h11.RemoteProtocolError as error:
            self._refuse(parser, error.error_status_hint, str(error))
            return
        if not isinstance(request, h11.Request):  # over the cap before the head ended
            self._refuse(parser, 431, "request head too large")
            return
        if len(request.headers) > MAX_HEADERS:
            self._refuse(parser, 431, f"more than {MAX_HEADERS} headers")
            return
        take = self._router.route(head_scope(request, self._transport)) if self._router else None
        if take is None:
            self._serve_here()
            return
        self._stop_deadline()
        self._transport.pause_reading()
        self._taking = self._loop.create_task(self._hand_over(take))

    def eof_received(self) -> bool | None:
        return None  # close: a head that ends half-way is no request

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()

    async def _hand_over(self, take: Callable[[socket.socket, bytes], Awaitable[str | None]]) -> None:
        transport = self._transport
        verdict = await take(transport.get_extra_info("socket"), bytes(self._buffer))
        if verdict is not None:
            self._serve_here(verdict)
            transport.resume_reading()
            return
        transport.abort()  # our descriptor only: the one it was handed to keeps the connection

    def _serve_here(self, verdict: str | None = None) -> None:
        """uvicorn's own protocol takes the connection and what it sent so far (with `verdict`:
        a reason the app here answers the request with, see supervisors/relay.py)."""
        self._stop_deadline()
        state = self._app_state if verdict is None else {**self._app_state, VERDICT: verdict}
        protocol = self._inner(config=self._config, server_state=self._server_state,
                               app_state=state, _loop=self._loop)
        transport = self._transport
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._buffer:
            protocol.data_received(bytes(self._buffer))  # type: ignore[attr-defined]
            self._buffer.clear()

    def _refuse(self, parser: h11.Connection, status: int, reason: str) -> None:
        """Answer a head we will not serve (h11 writes the response), then close."""
        self._stop_deadline()
        body = json.dumps({"detail": reason[:120]}).encode()
        try:
            data = parser.send(h11.Response(status_code=status, headers=[
                ("content-type", "application/json"), ("content-length", str(len(body))),
                ("connection", "close")])) or b""
            data += parser.send(h11.Data(data=body)) or b""
        except h11.LocalProtocolError:
            data = b""  # no answer is possible in this state: just close
        self._buffer.clear()
        self._transport.write(data)
        self._transport.close()

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


class Preread(asyncio.Protocol):
    """Where a connection continues (a worker): give uvicorn's protocol the bytes read from it
    elsewhere, before anything read here, then step out of the way."""

    def __init__(self, protocol: asyncio.Protocol, data: bytes) -> None:
        self._protocol = protocol
        self._data = data

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.set_protocol(self._protocol)
        self._protocol.connection_made(transport)
        if self._data:
            self._protocol.data_received(self._data)  # type: ignore[attr-defined]


def protocol_factory(router: Router | None, inner: Callable[..., asyncio.Protocol]) -> Any:
    """The `http=` class for uvicorn.Config: HeadProtocol bound to `router` and `inner`."""

    def build(config: Any, server_state: Any, app_state: dict[str, Any],
              _loop: asyncio.AbstractEventLoop | None = None) -> HeadProtocol:
        return HeadProtocol(config, server_state, app_state, _loop, router=router, inner=inner)

    return build


def head_scope(request: h11.Request, transport: Any) -> dict[str, Any]:
    """The ASGI scope of a request head, as far as routing and admission need it."""
    headers = [(name.lower(), value) for name, value in request.headers]
    upgrade = b"".join(value for name, value in headers if name == b"upgrade")
    websocket = request.method == b"GET" and upgrade.strip().lower() == b"websocket"
    raw_path, _, query = request.target.partition(b"?")
    peer = transport.get_extra_info("peername")
    here = transport.get_extra_info("sockname")
    return {
        "type": "websocket" if websocket else "http", "asgi": {"version": "3.0"},
        "http_version": request.http_version.decode(), "scheme": "ws" if websocket else "http",
        "method": request.method.decode(), "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path, "root_path": "", "query_string": query, "headers": headers,
        "client": tuple(peer[:2]) if isinstance(peer, tuple) else None,
        "server": tuple(here[:2]) if isinstance(here, tuple) else None,
        "subprotocols": [], "state": {},
    }
