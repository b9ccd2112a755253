"""The server side of RFC 6455 for uvicorn: websockets' sans-I/O handshake, then our own frames.

A media stream is fifty small messages a second per call each way, and uvicorn's WebSocket
protocols spend more on each message than the audio work does: a generator-based frame parser
that builds objects and enums, an asyncio.Queue, a pause and resume of reading, an Event to wait
on before every send. Here a frame is read with a few indexes and slices, a message waits for
the app in a deque, and a send is a header and one write. The handshake and its error answers
(400, 426, 403, 500) stay with websockets' `ServerProtocol`, which is only used for that.

Media transports go one step further through the frame link (runner.framelink): once they
`listen`, data messages go to their callback as they are parsed, and `write` sends a message
without a coroutine. ASGI messages still carry the handshake and the end of the connection.
From then on the connection is read on the shared frame clock's tick (runner.tickread), so all
calls' frames are read in one wake-up per 20 ms, unless the listener asks to be read as bytes
arrive (the process-mode relay).

Reading pauses while the app has `ws_max_queue` messages it has not taken (a flood cannot
grow memory), messages are capped at `ws_max_size`, no extension is negotiated (audio does not
compress), and keepalive pings follow `ws_ping_interval` / `ws_ping_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.server import ServerProtocol

from runner.framelink import FRAME_LINK, data_message, message_data
from runner.tickread import TickReader

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

log = logging.getLogger("runner.websocket")

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
WHOLE_DATA = frozenset({0x80 | TEXT, 0x80 | BINARY})  # first byte: FIN, no RSV bits, opcode
NO_STATUS, ABNORMAL = 1005, 1006
PROTOCOL_ERROR, INVALID_DATA, TOO_BIG, INTERNAL_ERROR, RESTARTING = 1002, 1007, 1009, 1011, 1012
#: Close codes a peer may put on the wire (RFC 6455 7.4, and the IANA registry up to 1014).
WIRE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
                              1014})
CLOSE_TIMEOUT = 10.0  # how long our close frame waits for the peer's before the socket goes
MAX_REASON_BYTES = 123  # a control frame carries 125 bytes, two of them the code
_MEDIUM, _LONG = struct.Struct("!BBH"), struct.Struct("!BBQ")  # FIN/opcode, 126/127, length


class ClientGone(OSError):
    """A send after the peer left (an OSError, which is what ASGI frameworks expect then)."""


def frame_header(first: int, size: int) -> bytes:
    """FIN/opcode byte and the unmasked length, in the shortest of its three forms."""
    if size < 126:
        return bytes((first, size))
    if size < 65536:  # a media message (Twilio's is about 300 bytes)
        return _MEDIUM.pack(first, 126, size)
    return _LONG.pack(first, 127, size)


def close_payload(code: int, reason: str) -> bytes:
    """A close frame's body: the code and as much of the reason as fits, cut on a character."""
    encoded = reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore").encode()
    return code.to_bytes(2, "big") + encoded


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection: uvicorn hands it the upgrade request, it runs the ASGI app."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers = server_state.default_headers
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.scope: dict[str, Any] | None = None
        self._handshake = ServerProtocol(max_size=config.ws_max_size)
        self._response: Any = None  # the 101 to send when the app accepts
        self._answered = False  # the handshake got its answer (101 or an error status)
        self._reading = False  # accepted, and neither side has ended the connection
        self._sending = False  # accepted, no close frame sent, the peer still there
        self._close_sent = False
        self._gone = False  # the app has been told the connection is over
        self._inbox: deque[dict[str, Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._pending = bytearray()  # bytes of a frame not complete yet
        self._needed = 0  # how many pending bytes the next parse needs to get anywhere
        self._fragments: list[bytes] | None = None
        self._fragment_opcode = TEXT
        self._fragment_size = 0
        self._max_size: int = config.ws_max_size
        self._max_queue: int = max(int(config.ws_max_queue), 1)
        self._ping_payload: bytes | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._on_frame: Callable[[str | bytes], None] | None = None
        self._tick_reader: TickReader | None = None  # reads on the frame clock once listening

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self._reading = False
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._tick_reader is not None:
            self._tick_reader.close()
        self._tell_app_gone(ABNORMAL, "")
        self.resume_writing()  # a send waiting for the buffer to drain learns the peer has gone

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        if not self._reading:
            self._before_or_after(data)
        elif self._pending or self._read_paused:
            self._pending += data
            if len(self._pending) >= self._needed and not self._read_paused:
                self._parse_pending()
        else:
            used = self._parse(data)
            if 0 <= used < len(data):
                self._pending += data[used:]

    def _parse_pending(self) -> None:
        used = self._parse(self._pending)
        if used > 0:
            del self._pending[:used]

    def _resume_reading(self) -> None:
        """Reading was paused for a full inbox: read on, starting with the frames held back."""
        self._read_paused = False
        self.transport.resume_reading()
        if self._pending and self._reading:
            self._parse_pending()

    def _before_or_after(self, data: bytes) -> None:
        """Bytes outside the frame loop: the upgrade request, frames sent before the 101 (read
        once the app accepts), or anything after the end (dropped)."""
        if self.scope is None and not self._answered:
            self._read_request(data)
        elif not self._answered and not self._gone:
            self._pending += data
            if len(self._pending) > self._max_size:
                self.transport.close()

    def shutdown(self) -> None:
        """uvicorn is stopping: close frames to open connections, 500 to unanswered ones."""
        if self._sending:
            self._write_close(RESTARTING, "server shutting down")
            self._tell_app_gone(RESTARTING, "server shutting down")
        elif not self._answered:
            self._answer(self._handshake.reject(500, "Internal Server Error"))
        self.transport.close()

    # ------------------------------------------------------------------ the handshake

    def _read_request(self, data: bytes) -> None:
        self._handshake.receive_data(data)
        for event in self._handshake.events_received():
            if isinstance(event, Request):
                self._start(event)
                return
        if self._handshake.parser_exc is not None:  # not a request we can read
            self._answer(self._handshake.reject(400, "Malformed WebSocket request"))
            self.transport.close()

    def _start(self, request: Request) -> None:
        if request.headers.get("Sec-WebSocket-Version", "13").strip() != "13":
            # RFC 6455 4.2.2: say which version we speak (websockets' answer is a bare 400)
            response = self._handshake.reject(426, "WebSocket version 13 is the one supported")
            response.headers["Sec-WebSocket-Version"] = "13"
            self._answer(response)
            self.transport.close()
            return
        response = self._handshake.accept(request)
        if response.status_code != 101:  # no key, no upgrade header...: websockets' answer
            self._answer(response)
            self.transport.close()
            return
        self._response = response
        raw_path, _, query = request.path.partition("?")
        protocols = [token.strip() for header in request.headers.get_all("Sec-WebSocket-Protocol")
                     for token in header.split(",") if token.strip()]
        sock, peer = self.transport.get_extra_info("sockname"), self.transport.get_extra_info("peername")
        root = self.config.root_path
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if self.transport.get_extra_info("sslcontext") else "ws",
            "server": tuple(sock[:2]) if isinstance(sock, tuple) else None,
            "client": tuple(peer[:2]) if isinstance(peer, tuple) else None,
            "root_path": root,
            "path": root + unquote(raw_path),
            "raw_path": root.encode("ascii") + raw_path.encode("ascii"),
            "query_string": query.encode("ascii"),
            "headers": [(name.lower().encode("ascii"), value.encode("latin-1"))
                        for name, value in request.headers.raw_items()],
            "subprotocols": protocols,
            "state": self.app_state.copy(),
            "extensions": {FRAME_LINK: self},
        }
        self._inbox.append({"type": "websocket.connect"})
        task = self.loop.create_task(self._run_app())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _answer(self, response: Any) -> None:
        self._answered = True
        if not self.transport.is_closing():
            self._handshake.send_response(response)
            self.transport.write(b"".join(self._handshake.data_to_send()))

    async def _run_app(self) -> None:
        assert self.scope is not None
        try:
            await self.app(self.scope, self.receive, self.send)
        except ClientGone:
            self._end_after_app(1000)
        except asyncio.CancelledError:
            self._end_after_app(RESTARTING)
            raise
        except Exception:
            log.exception("the WebSocket app for %s failed", self.scope["path"])
            self._end_after_app(INTERNAL_ERROR)
        else:
            if not self._answered:
                log.error("the WebSocket app for %s returned without accepting", self.scope["path"])
            self._end_after_app(1000)

    def _end_after_app(self, code: int) -> None:
        """The app is done: answer a handshake it never answered; close a socket it left open."""
        if not self._answered:
            self._answer(self._handshake.reject(500, "Internal Server Error"))
            self.transport.close()
        elif self._sending:
            self._write_close(code, "")
            self.transport.close()
        elif "close" not in self._timers:
            self.transport.close()

    # ------------------------------------------------------------------ ASGI

    async def receive(self) -> dict[str, Any]:
        inbox = self._inbox
        while not inbox:
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = inbox[0] if len(inbox) == 1 and self._gone else inbox.popleft()
        if self._read_paused and len(inbox) <= self._max_queue // 2:
            self._resume_reading()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            if not self._sending:
                if not self._answered:
                    raise RuntimeError("websocket.send before websocket.accept")
                raise ClientGone("the WebSocket is closed or its peer has gone")
            if self._write_paused:
                await self._drain()
            data = message.get("bytes")
            if data is None and (data := message.get("text")) is None:
                raise RuntimeError("a websocket.send message needs 'bytes' or 'text'")
            self._write_data(data)
        elif kind == "websocket.accept" and not self._answered:
            self._accept(message)
        elif kind == "websocket.close" and not self._answered:
            self._answer(self._handshake.reject(403, ""))
            self._tell_app_gone(ABNORMAL, "")
            self.transport.close()
        elif kind == "websocket.close":
            if self._sending:  # once closing or closed, closing again changes nothing
                code, reason = message.get("code") or 1000, message.get("reason") or ""
                self._write_close(code, reason)
                self._tell_app_gone(code, reason)
                self._timers["close"] = self.loop.call_later(CLOSE_TIMEOUT, self.transport.close)
                if self._read_paused:  # read on, for the peer's close frame
                    self._resume_reading()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in this state of the WebSocket")

    def _accept(self, message: dict[str, Any]) -> None:
        response = self._response
        headers: Headers = response.headers
        del headers["Date"]  # the server's own headers carry it
        for name, value in (*self.default_headers, *message.get("headers", ())):
            headers[name.decode("latin-1")] = value.decode("latin-1")
        if protocol := message.get("subprotocol"):
            headers["Sec-WebSocket-Protocol"] = protocol
        self._answer(response)
        self._reading = self._sending = not self.transport.is_closing()
        interval = self.config.ws_ping_interval
        if interval:
            self._timers["ping"] = self.loop.call_later(interval, self._ping)
        if self._pending and self._reading:  # frames that came before the 101
            self._parse_pending()

    async def _drain(self) -> None:
        if self._drained is None or self._drained.done():
            self._drained = self.loop.create_future()
        await self._drained
        if self._gone:
            raise ClientGone("the WebSocket peer has gone")

    # ------------------------------------------------------------------ the frame link

    def listen(self, on_frame: Callable[[str | bytes], None], on_tick: bool = True) -> None:
        """From now on hand each text or binary message to `on_frame` as it arrives (those the
        app has not received yet first, in order); the end still comes as websocket.disconnect.
        `on_tick`: read the connection on the frame clock's tick (runner.tickread)."""
        waiting = [m for m in self._inbox if m["type"] == "websocket.receive"]
        for message in waiting:
            self._inbox.remove(message)
        self._on_frame = on_frame
        for message in waiting:
            on_frame(message_data(message))
        if self._read_paused:
            self._resume_reading()
        # From here on the inbox only gets the end of the connection, so it never pauses
        # reading; with `on_tick` the reading is the clock's.
        if on_tick and self._tick_reader is None and self._reading:
            self._tick_reader = TickReader.attach(self.transport, self.data_received)

    def write(self, data: str | bytes) -> None:
        """Send one message now. Once the connection is closing or gone it is dropped (the
        sender learns of the end from websocket.disconnect, as every reader does), and so it is
        while a peer that stopped reading has `ws_max_size` unread: real-time audio that late
        is worth nothing, and the buffer must not grow for as long as the call lasts."""
        if self._sending and self.transport.get_write_buffer_size() <= self._max_size:
            self._write_data(data)

    # ------------------------------------------------------------------ frames in

    def _parse(self, data: bytes | bytearray) -> int:
        """Handle the whole frames at the start of `data`; returns the bytes used, -1 once the
        connection has failed or closed (nothing more is read)."""
        pos, end = 0, len(data)
        while end - pos >= 2:
            first, second = data[pos], data[pos + 1]
            if not second & 0x80:
                self._fail(PROTOCOL_ERROR, "client frames must be masked")
                return -1
            size, start = second & 0x7F, pos + 6
            if size == 126:
                if end - pos < 8:
                    self._needed = 8
                    return pos
                size, start = int.from_bytes(data[pos + 2 : pos + 4], "big"), pos + 8
            elif size == 127:
                if end - pos < 14:
                    self._needed = 14
                    return pos
                size, start = int.from_bytes(data[pos + 2 : pos + 10], "big"), pos + 14
            if size > self._max_size:
                self._fail(TOO_BIG, f"a frame of {size} bytes is over the {self._max_size} limit")
                return -1
            stop = start + size
            if stop > end:
                self._needed = stop - pos
                return pos
            payload = apply_mask(data[start:stop], data[start - 4 : start])
            pos = stop
            if first in WHOLE_DATA and self._fragments is None:
                if not self._message(first & 0x0F, payload):  # the usual frame: straight there
                    return -1
            elif not self._frame(first, payload):
                return -1
            if self._read_paused:  # the app has a full inbox: the rest waits, unparsed
                self._needed = 0
                return pos
        self._needed = 2
        return pos

    def _frame(self, first: int, payload: bytes) -> bool:
        """One frame; False when reading must stop (closed or failed)."""
        if first & 0x70:
            return self._fail(PROTOCOL_ERROR, "reserved bits set without an extension")
        opcode, fin = first & 0x0F, first & 0x80
        if opcode >= CLOSE:
            if not fin or len(payload) > 125:
                return self._fail(PROTOCOL_ERROR, "control frames must be whole and short")
            if opcode == PING:
                if self._sending:
                    self._write_frame(0x80 | PONG, payload)
                return True
            if opcode == PONG:
                self._pong(payload)
                return True
            if opcode == CLOSE:
                self._closed_by_peer(payload)
                return False
            return self._fail(PROTOCOL_ERROR, f"reserved opcode {opcode}")
        if opcode == CONTINUATION:
            if self._fragments is None:
                return self._fail(PROTOCOL_ERROR, "a continuation frame with no message begun")
            self._fragments.append(payload)
            self._fragment_size += len(payload)
            if self._fragment_size > self._max_size:
                return self._fail(TOO_BIG, f"a message over the {self._max_size} byte limit")
            if not fin:
                return True
            payload, opcode = b"".join(self._fragments), self._fragment_opcode
            self._fragments = None
        elif opcode in (TEXT, BINARY):
            if self._fragments is not None:
                return self._fail(PROTOCOL_ERROR, "a new message before the last one ended")
            if not fin:
                self._fragments, self._fragment_opcode = [payload], opcode
                self._fragment_size = len(payload)
                return True
        else:
            return self._fail(PROTOCOL_ERROR, f"reserved opcode {opcode}")
        return self._message(opcode, payload)

    def _message(self, opcode: int, payload: bytes) -> bool:
        """A whole text or binary message, to the frame listener or the app's inbox."""
        if self._close_sent:
            return True  # the app has closed: only the peer's close frame matters now
        if opcode == TEXT:
            try:
                data: str | bytes = payload.decode()
            except UnicodeDecodeError:
                return self._fail(INVALID_DATA, "text that is not UTF-8")
        else:
            data = payload
        if self._on_frame is None:
            self._deliver(data_message("websocket.receive", data))
            return True
        try:
            self._on_frame(data)
        except Exception:
            log.exception("the frame listener of %s failed", self.scope["path"] if self.scope else "?")
            return self._fail(INTERNAL_ERROR, "the server failed on a message")
        return True

    def _deliver(self, message: dict[str, Any]) -> None:
        self._inbox.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if len(self._inbox) >= self._max_queue and not self._read_paused and not self._gone:
            self._read_paused = True
            self.transport.pause_reading()

    def _closed_by_peer(self, payload: bytes) -> None:
        code, reason = NO_STATUS, ""
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if len(payload) < 2 or not (code in WIRE_CLOSE_CODES or 3000 <= code <= 4999):
                self._fail(PROTOCOL_ERROR, f"close code {code} may not be sent")
                return
            try:
                reason = payload[2:].decode()
            except UnicodeDecodeError:
                self._fail(INVALID_DATA, "a close reason that is not UTF-8")
                return
        self._reading = False
        if not self._close_sent:
            self._close_sent, self._sending = True, False
            self._write_frame(0x80 | CLOSE, payload[:2])
        self._tell_app_gone(code, reason)
        self.transport.close()  # the server ends the TCP connection (RFC 6455 7.1.1)

    def _fail(self, code: int, reason: str) -> bool:
        """Fail the connection: say why in a close frame, tell the app, drop the socket."""
        log.info("WebSocket %s: closing with %d: %s",
                 self.scope["path"] if self.scope else "?", code, reason)
        self._reading = False
        if not self._close_sent:
            self._write_close(code, reason)
        self._tell_app_gone(code, reason)
        self.transport.close()
        return False

    def _tell_app_gone(self, code: int, reason: str) -> None:
        if not self._gone:
            self._gone = True
            self._sending = False
            self._fragments = None
            self._deliver({"type": "websocket.disconnect", "code": code, "reason": reason})

    # ------------------------------------------------------------------ frames out

    def _write_data(self, data: str | bytes) -> None:
        if isinstance(data, str):
            first, payload = 0x80 | TEXT, data.encode()
        else:
            first, payload = 0x80 | BINARY, data
        self._write_frame(first, payload)

    def _write_frame(self, first: int, payload: bytes) -> None:
        self.transport.write(frame_header(first, len(payload)) + payload)

    def _write_close(self, code: int, reason: str) -> None:
        self._close_sent, self._sending = True, False
        self._write_frame(0x80 | CLOSE, close_payload(code, reason))

    def _ping(self) -> None:
        self._timers.pop("ping", None)
        if not self._sending:
            return
        self._ping_payload = os.urandom(4)
        self._write_frame(0x80 | PING, self._ping_payload)
        timeout = self.config.ws_ping_timeout
        if timeout:
            self._timers["pong"] = self.loop.call_later(timeout, self._no_pong)
        else:
            self._timers["ping"] = self.loop.call_later(self.config.ws_ping_interval, self._ping)

    def _pong(self, payload: bytes) -> None:
        if self._ping_payload is None or payload != self._ping_payload:
            return  # unsolicited, or an answer to an older ping
        self._ping_payload = None
        timer = self._timers.pop("pong", None)
        if timer is not None:
            timer.cancel()
            self._timers["ping"] = self.loop.call_later(self.config.ws_ping_interval, self._ping)

    def _no_pong(self) -> None:
        self._timers.pop("pong", None)
        if self._sending:
            self._fail(INTERNAL_ERROR, "keepalive ping timeout")
