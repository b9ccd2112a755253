"""WebSocket wire behaviour (RFC 6455) over real TCP, with a hand-written raw client.

The protocol is uvicorn's own (its `ws="auto"` choice, conformance tested by its maintainers);
these tests pin what runner's settings of it (`runner.serve.uvicorn_config`) must give on the
wire: handshake statuses, framing and length encodings, fragmentation, control frames, close
codes for protocol errors, the size cap, no compression, back-pressure, keepalive, shutdown.
The client builds every frame byte by byte (FIN/RSV/opcode, MASK + 7/16/64-bit length, mask
key, masked payload) so nothing is hidden by a client library. """

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pytest
import uvicorn

from runner.audio import tone
from runner.serve import WEBSOCKET_MAX_MESSAGE, bind_socket, uvicorn_config

from conftest import as_bot, make_config, serve, uvicorn_on, wait_for

pytestmark = pytest.mark.timeout(20)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TIMEOUT = 1.0  # every read waits at most this long: a hang fails the test instead of blocking it

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# --- the raw client -------------------------------------------------------------------------------

class Frame(NamedTuple):
    fin: bool
    opcode: int
    payload: bytes


def mask_payload(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return b""
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0, mask: bool = True,
                 length: int | None = None) -> bytes:
    """One frame as a client writes it. `length` overrides the declared payload length (to announce
    a frame bigger than the bytes that follow)."""
    declared = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask else 0
    if declared < 126:
        header = struct.pack("!BB", first, mask_bit | declared)
    elif declared < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, declared)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, declared)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + mask_payload(payload, key)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def expected_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


@dataclass
class Handshake:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    key: str


async def handshake(port: int, path: str = "/", extra: dict[str, str] | None = None,
                    omit: tuple[str, ...] = ()) -> Handshake:
    """Open TCP and send an upgrade request; return the response status line and headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    headers = {"Host": f"127.0.0.1:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13", **(extra or {})}
    lines = [f"GET {path} HTTP/1.1"] + [f"{name}: {value}" for name, value in headers.items()
                                        if name not in omit]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    response: dict[str, str] = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            response[name] = f"{response[name]}, {value.strip()}" if name in response else value.strip()
    assert status_line.startswith("HTTP/1.1 "), status_line
    return Handshake(int(status_line.split()[1]), response, reader, writer, key)


class Client:
    """A connected WebSocket client speaking raw frames."""

    def __init__(self, shake: Handshake) -> None:
        self.reader = shake.reader
        self.writer = shake.writer
        self.handshake = shake

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_frame(self, opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
                         mask: bool = True) -> None:
        await self.send_raw(encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask))

    async def _read(self, n: int, timeout: float) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), timeout)

    async def read_frame(self, timeout: float = TIMEOUT) -> Frame:
        """The next server frame, checked: unmasked, no RSV bits, minimal length encoding."""
        first, second = await self._read(2, timeout)
        assert first & 0x70 == 0, f"server set RSV bits: {first:#04x}"
        assert not second & 0x80, "server frames must not be masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self._read(2, timeout))
            assert length >= 126, "16-bit length used for a short payload"
        elif length == 127:
            (length,) = struct.unpack("!Q", await self._read(8, timeout))
            assert 1 << 16 <= length < 1 << 63, "64-bit length not minimal or top bit set"
        payload = await self._read(length, timeout) if length else b""
        return Frame(bool(first & 0x80), first & 0x0F, payload)

    async def read_message(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        """The next data message (opcode, payload), reassembled if the server fragments."""
        frame = await self.read_frame(timeout)
        assert frame.opcode in (TEXT, BINARY), f"expected a data frame, got {frame}"
        opcode, parts = frame.opcode, [frame.payload]
        while not frame.fin:
            frame = await self.read_frame(timeout)
            assert frame.opcode == CONT, f"expected a continuation frame, got {frame}"
            parts.append(frame.payload)
        return opcode, b"".join(parts)

    async def echo(self, opcode: int, payload: bytes) -> None:
        await self.send_frame(opcode, payload)
        assert await self.read_message() == (opcode, payload)

    async def expect_close(self, code: int, timeout: float = TIMEOUT) -> str:
        """The next frame is a close frame with `code`; returns its reason."""
        frame = await self.read_frame(timeout)
        assert frame.opcode == CLOSE, f"expected a close frame, got {frame}"
        assert len(frame.payload) >= 2, f"close frame without a code: {frame.payload!r}"
        (got,) = struct.unpack("!H", frame.payload[:2])
        assert got == code, f"close code {got} (reason {frame.payload[2:]!r}), expected {code}"
        return frame.payload[2:].decode()

    async def expect_eof(self, timeout: float = TIMEOUT) -> None:
        """The server closes TCP (a reset counts: the connection is gone either way)."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), timeout)
        except ConnectionResetError:
            return
        assert data == b"", f"expected the server to close TCP, got {data!r}"

    async def expect_open(self, seconds: float = 0.2) -> None:
        """Nothing arrives and TCP stays open for `seconds`."""
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.reader.read(1), seconds)

    def abort(self) -> None:
        """Vanish: close TCP with no close frame."""
        self.writer.close()

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def connect(port: int, path: str = "/", extra: dict[str, str] | None = None) -> Client:
    shake = await handshake(port, path, extra)
    assert shake.status == 101, shake
    return Client(shake)


async def read_http_body(shake: Handshake) -> bytes:
    """The rest of a non-101 response, up to the server closing TCP."""
    return await asyncio.wait_for(shake.reader.read(), TIMEOUT)


# --- the server -----------------------------------------------------------------------------------

@dataclass
class EchoApp:
    """A bare ASGI app: accepts (with "chat" when offered), echoes text as text and bytes as bytes,
    and records every websocket.disconnect it receives."""

    disconnects: list[tuple[int | None, str | None]] = field(default_factory=list)
    accepted: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        path = scope["path"]
        if path == "/reject":
            await send({"type": "websocket.close", "code": 1008})
            return
        if path == "/noaccept":
            return
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if "chat" in scope["subprotocols"]:
            accept["subprotocol"] = "chat"
        await send(accept)
        self.accepted += 1
        if path == "/raise":
            raise RuntimeError("the app failed (expected by the test)")
        if path == "/closeme":
            await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
        if path == "/stall":  # stops reading until released: the socket must stop being read
            await self.released.wait()
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.disconnects.append((message.get("code"), message.get("reason")))
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            elif message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"]})


def project_config(app: Any, config: Any = None) -> uvicorn.Config:
    """The project's uvicorn configuration (runner.serve.uvicorn_config)."""
    return uvicorn_config(app, config or make_config())


@dataclass
class Running:
    app: EchoApp
    server: uvicorn.Server
    port: int


@contextlib.asynccontextmanager
async def running(app: EchoApp, config: uvicorn.Config | None = None) -> AsyncIterator[Running]:
    """Serve `app` with the project's uvicorn configuration (or `config`) on an ephemeral port."""
    sock = bind_socket("127.0.0.1", 0)
    async with uvicorn_on(sock, config or project_config(app)) as server:
        yield Running(app, server, sock.getsockname()[1])


@pytest.fixture
async def srv() -> AsyncIterator[Running]:
    async with running(EchoApp()) as served:
        yield served


async def assert_still_serving(port: int) -> None:
    client = await connect(port)
    await client.echo(TEXT, b"still here")
    await client.aclose()


# --- 1. handshake ---------------------------------------------------------------------------------

async def test_upgrade_gets_101_with_the_correct_accept_key(srv: Running) -> None:
    shake = await handshake(srv.port)
    assert shake.status == 101
    assert shake.headers["sec-websocket-accept"] == expected_accept(shake.key)
    assert shake.headers["upgrade"].lower() == "websocket"
    assert "upgrade" in shake.headers["connection"].lower()
    assert "sec-websocket-protocol" not in shake.headers  # none offered, none chosen
    client = Client(shake)
    await client.echo(TEXT, b"hi")
    await client.aclose()


async def test_accepted_subprotocol_is_echoed(srv: Running) -> None:
    shake = await handshake(srv.port, extra={"Sec-WebSocket-Protocol": "superchat, chat"})
    assert shake.status == 101
    assert shake.headers["sec-websocket-protocol"] == "chat"
    await Client(shake).aclose()


async def test_missing_key_is_http_400(srv: Running) -> None:
    shake = await handshake(srv.port, omit=("Sec-WebSocket-Key",))
    assert shake.status == 400
    await read_http_body(shake)  # then the server closes TCP
    assert srv.app.accepted == 0


async def test_unsupported_version_is_refused_with_an_http_error(srv: Running) -> None:
    shake = await handshake(srv.port, extra={"Sec-WebSocket-Version": "8"})
    assert shake.status in (400, 426)
    await read_http_body(shake)
    assert srv.app.accepted == 0


async def test_permessage_deflate_is_not_negotiated_even_when_offered(srv: Running) -> None:
    shake = await handshake(srv.port, extra={
        "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"})
    assert shake.status == 101
    assert "sec-websocket-extensions" not in shake.headers
    client = Client(shake)
    await client.echo(BINARY, b"\x00" * 1000)  # arrives uncompressed (read_frame rejects RSV1)
    await client.aclose()


# --- 2. echo and length encodings -----------------------------------------------------------------

LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 70000]


@pytest.mark.parametrize("length", LENGTHS)
async def test_binary_echo_at_each_length_encoding(srv: Running, length: int) -> None:
    client = await connect(srv.port)
    await client.echo(BINARY, os.urandom(length))
    await client.aclose()


@pytest.mark.parametrize("length", LENGTHS)
async def test_text_echo_at_each_length_encoding(srv: Running, length: int) -> None:
    client = await connect(srv.port)
    await client.echo(TEXT, b"x" * length)
    await client.aclose()


async def test_non_ascii_text_is_echoed_byte_for_byte(srv: Running) -> None:
    client = await connect(srv.port)
    await client.echo(TEXT, "héllo wörld — 日本語 🎙️ ∑".encode())
    await client.aclose()


async def test_message_of_exactly_the_size_cap_is_accepted(srv: Running) -> None:
    client = await connect(srv.port)
    payload = os.urandom(WEBSOCKET_MAX_MESSAGE)
    await client.send_frame(BINARY, payload)
    assert await client.read_message(timeout=5) == (BINARY, payload)
    await client.aclose()


# --- 3. TCP segmentation --------------------------------------------------------------------------

async def test_many_frames_in_one_tcp_write_are_echoed_in_order(srv: Running) -> None:
    client = await connect(srv.port)
    messages = [(TEXT, f"message {i}".encode()) if i % 2 else (BINARY, bytes([i]) * i) for i in range(60)]
    await client.send_raw(b"".join(encode_frame(opcode, payload) for opcode, payload in messages))
    assert [await client.read_message() for _ in messages] == messages
    await client.aclose()


async def test_a_frame_written_one_byte_at_a_time_is_echoed(srv: Running) -> None:
    client = await connect(srv.port)
    payload = "byte by byte, é".encode() * 10  # > 125 bytes: the 16-bit length is split too
    for byte in encode_frame(TEXT, payload):
        await client.send_raw(bytes([byte]))
        await asyncio.sleep(0.001)
    assert await client.read_message() == (TEXT, payload)
    await client.aclose()


# --- 4. fragmentation -----------------------------------------------------------------------------

async def test_fragmented_text_is_reassembled(srv: Running) -> None:
    client = await connect(srv.port)
    await client.send_frame(TEXT, b"Hello", fin=False)
    await client.send_frame(CONT, b", ", fin=False)
    await client.send_frame(CONT, b"world")
    assert await client.read_message() == (TEXT, b"Hello, world")
    await client.aclose()


async def test_fragmented_binary_is_reassembled(srv: Running) -> None:
    client = await connect(srv.port)
    parts = [os.urandom(100), os.urandom(70000), b"", os.urandom(3)]
    await client.send_frame(BINARY, parts[0], fin=False)
    for part in parts[1:-1]:
        await client.send_frame(CONT, part, fin=False)
    await client.send_frame(CONT, parts[-1])
    assert await client.read_message() == (BINARY, b"".join(parts))
    await client.aclose()


async def test_utf8_character_split_across_fragments_is_valid(srv: Running) -> None:
    client = await connect(srv.port)
    text = "a€b".encode()  # € is 3 bytes: split it over the two frames
    await client.send_frame(TEXT, text[:2], fin=False)
    await client.send_frame(CONT, text[2:])
    assert await client.read_message() == (TEXT, text)
    await client.aclose()


async def test_ping_between_fragments_is_answered_and_the_message_still_reassembled(srv: Running) -> None:
    client = await connect(srv.port)
    await client.send_frame(TEXT, b"Hel", fin=False)
    await client.send_frame(PING, b"in the middle")
    await client.send_frame(CONT, b"lo", fin=False)
    await client.send_frame(CONT, b"!")
    assert await client.read_frame() == Frame(True, PONG, b"in the middle")
    assert await client.read_message() == (TEXT, b"Hello!")
    await client.aclose()


# --- 5. control frames ----------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"ping!", bytes(range(125))], ids=["empty", "short", "125-bytes"])
async def test_ping_is_answered_with_a_pong_carrying_the_same_payload(srv: Running, payload: bytes) -> None:
    client = await connect(srv.port)
    await client.send_frame(PING, payload)
    assert await client.read_frame() == Frame(True, PONG, payload)
    await client.aclose()


async def test_unsolicited_pong_is_ignored(srv: Running) -> None:
    client = await connect(srv.port)
    await client.send_frame(PONG, b"unsolicited")
    await client.echo(TEXT, b"after the pong")
    await client.aclose()


# --- 6. protocol errors: close 1002, then TCP ends ------------------------------------------------

PROTOCOL_ERRORS = {
    "unmasked-frame": [encode_frame(TEXT, b"no mask", mask=False)],
    "rsv1-without-extension": [encode_frame(TEXT, b"rsv1", rsv=4)],
    "rsv2": [encode_frame(BINARY, b"rsv2", rsv=2)],
    "rsv3": [encode_frame(BINARY, b"rsv3", rsv=1)],
    "reserved-data-opcode-3": [encode_frame(0x3, b"op3")],
    "reserved-control-opcode-11": [encode_frame(0xB, b"opB")],
    "control-frame-over-125-bytes": [encode_frame(PING, b"p" * 126)],
    "fragmented-ping": [encode_frame(PING, b"frag", fin=False)],
    "continuation-without-a-message": [encode_frame(CONT, b"orphan")],
    "text-while-fragmented-message-unfinished": [encode_frame(TEXT, b"one", fin=False),
                                                 encode_frame(TEXT, b"two")],
    "binary-while-fragmented-message-unfinished": [encode_frame(BINARY, b"one", fin=False),
                                                   encode_frame(BINARY, b"two")],
    "close-with-1-byte-payload": [encode_frame(CLOSE, b"\x03")],
    "close-code-999": [encode_frame(CLOSE, close_payload(999))],
    "close-code-1005": [encode_frame(CLOSE, close_payload(1005))],
    "close-code-1006": [encode_frame(CLOSE, close_payload(1006))],
    "close-code-1015": [encode_frame(CLOSE, close_payload(1015))],
    "close-code-5000": [encode_frame(CLOSE, close_payload(5000))],
}


@pytest.mark.parametrize("frames", list(PROTOCOL_ERRORS.values()), ids=list(PROTOCOL_ERRORS))
async def test_protocol_error_is_closed_with_1002(srv: Running, frames: list[bytes]) -> None:
    client = await connect(srv.port)
    for frame in frames:  # one write each, so the server sees the state built up frame by frame
        await client.send_raw(frame)
        await asyncio.sleep(0.02)
    await client.expect_close(1002)
    await client.expect_eof()
    await wait_for(lambda: bool(srv.app.disconnects), 2)
    assert srv.app.disconnects[0][0] == 1002
    await assert_still_serving(srv.port)


# --- 7. invalid UTF-8: close 1007 -----------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"\xff", b"ok \xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                     b"\xc0\xaf"],
                         ids=["0xff", "bad-continuation", "surrogate", "above-U+10FFFF", "overlong"])
async def test_invalid_utf8_text_is_closed_with_1007(srv: Running, payload: bytes) -> None:
    client = await connect(srv.port)
    await client.send_frame(TEXT, payload)
    await client.expect_close(1007)
    await client.expect_eof()
    await wait_for(lambda: bool(srv.app.disconnects), 2)
    assert srv.app.disconnects[0][0] == 1007


async def test_invalid_utf8_in_a_fragmented_text_is_closed_with_1007(srv: Running) -> None:
    client = await connect(srv.port)
    await client.send_frame(TEXT, b"fine so far", fin=False)
    await client.send_frame(CONT, b"\xff\xfe")
    await client.expect_close(1007)
    await client.expect_eof()


async def test_invalid_utf8_in_a_close_reason_is_closed_with_1007(srv: Running) -> None:
    client = await connect(srv.port)
    await client.send_frame(CLOSE, close_payload(1000, b"bad \xff reason"))
    await client.expect_close(1007)  # RFC 6455 8.1 / 7.4.1: 1007 is the code for non-UTF-8 data
    await client.expect_eof()


async def test_invalid_utf8_in_binary_is_fine(srv: Running) -> None:
    client = await connect(srv.port)
    await client.echo(BINARY, b"\xff\xfe\xfd")
    await client.aclose()


# --- 8. the size cap: close 1009 ------------------------------------------------------------------

async def test_single_frame_over_the_cap_is_closed_with_1009(srv: Running) -> None:
    client = await connect(srv.port)
    # Announce one byte over the cap and send only the start: the header alone settles it (and the
    # server closes with nothing of ours left unread, so TCP ends with a FIN, not a reset).
    await client.send_raw(encode_frame(BINARY, b"x" * 1024, length=WEBSOCKET_MAX_MESSAGE + 1)[:14 + 1024])
    await client.expect_close(1009)
    await client.expect_eof()
    await wait_for(lambda: bool(srv.app.disconnects), 2)
    assert srv.app.disconnects[0][0] == 1009


async def test_fragments_adding_up_past_the_cap_are_closed_with_1009(srv: Running) -> None:
    client = await connect(srv.port)
    await client.send_frame(BINARY, os.urandom(WEBSOCKET_MAX_MESSAGE - 10), fin=False)
    await client.expect_open(0.1)  # under the cap so far
    # A small continuation, sent whole in one write: whether the server checks the total at the
    # header or after the payload, it reads all of it before closing (a FIN, not a reset).
    await client.send_frame(CONT, b"y" * 100)
    await client.expect_close(1009)
    await client.expect_eof()
    await wait_for(lambda: bool(srv.app.disconnects), 2)
    assert srv.app.disconnects[0][0] == 1009


# --- 9-10. closing handshakes ---------------------------------------------------------------------

async def test_client_close_is_echoed_and_the_app_sees_code_and_reason(srv: Running) -> None:
    client = await connect(srv.port)
    await client.echo(TEXT, b"before closing")
    await client.send_frame(CLOSE, close_payload(1000, b"done"))
    await client.expect_close(1000)
    await client.expect_eof()
    await wait_for(lambda: bool(srv.app.disconnects), 2)
    assert srv.app.disconnects == [(1000, "done")]


async def test_client_close_without_a_code_is_answered_and_the_app_sees_1005(srv: Running) -> None:
    client = await connect(srv.port)
    await client.send_frame(CLOSE)
    frame = await client.read_frame()
    assert frame == Frame(True, CLOSE, b"")  # an empty close answered with an empty close
    await client.expect_eof()
    await wait_for(lambda: bool(srv.app.disconnects), 2)
    assert srv.app.disconnects[0][0] == 1005


async def test_client_close_with_an_application_code_is_echoed(srv: Running) -> None:
    client = await connect(srv.port)
    await client.send_frame(CLOSE, close_payload(4321, b"app"))
    await client.expect_close(4321)
    await client.expect_eof()
    await wait_for(lambda: bool(srv.app.disconnects), 2)
    assert srv.app.disconnects == [(4321, "app")]


async def test_data_after_a_client_close_is_ignored(srv: Running) -> None:
    client = await connect(srv.port)
    await client.send_raw(encode_frame(CLOSE, close_payload(1000)) + encode_frame(TEXT, b"too late"))
    await client.expect_close(1000)
    await client.expect_eof()


async def test_app_close_reaches_the_client_and_tcp_ends_after_the_reply(srv: Running) -> None:
    client = await connect(srv.port, "/closeme")
    assert await client.expect_close(4001) == "bye"
    await client.expect_open(0.2)  # the server waits for the client's close reply
    await client.send_frame(CLOSE, close_payload(4001))
    await client.expect_eof()
    await wait_for(lambda: bool(srv.app.disconnects), 2)
    assert srv.app.disconnects == [(4001, "bye")]  # uvicorn reports the app's own close back to it


# --- back-pressure ---------------------------------------------------------------------------------

async def test_an_app_that_stops_reading_pauses_the_socket_instead_of_buffering(srv: Running) -> None:
    client = await connect(srv.port, "/stall")
    frame = encode_frame(BINARY, bytes(1000))
    for _ in range(20000):  # 20 MB: far more than the kernel buffers between us and the app
        client.writer.write(frame)
    with pytest.raises(TimeoutError):  # the server stopped reading: our writes back up here
        await asyncio.wait_for(client.writer.drain(), 1.0)
    srv.app.released.set()
    for _ in range(20000):  # every message still arrives, in order, once the app reads again
        assert (await client.read_frame()).payload == bytes(1000)
    await client.aclose()


# --- 11. the client vanishes ----------------------------------------------------------------------

async def test_client_vanishing_after_the_handshake_is_a_1006_disconnect(srv: Running) -> None:
    client = await connect(srv.port)
    await client.echo(TEXT, b"hello")
    client.abort()
    await wait_for(lambda: bool(srv.app.disconnects), 2)  # the app hears of it
    await assert_still_serving(srv.port)


async def test_client_vanishing_mid_frame_is_a_1006_disconnect(srv: Running) -> None:
    client = await connect(srv.port)
    await client.send_raw(encode_frame(BINARY, os.urandom(1000))[:500])
    await asyncio.sleep(0.05)
    client.abort()
    await wait_for(lambda: bool(srv.app.disconnects), 2)  # the app hears of it
    await assert_still_serving(srv.port)


# --- 12. the app refuses or fails -----------------------------------------------------------------

async def test_close_before_accept_is_http_403(srv: Running) -> None:
    shake = await handshake(srv.port, "/reject")
    assert shake.status == 403
    await read_http_body(shake)


async def test_returning_without_accept_is_http_500(srv: Running) -> None:
    shake = await handshake(srv.port, "/noaccept")
    assert shake.status == 500
    await read_http_body(shake)
    await assert_still_serving(srv.port)


async def test_app_raising_after_accept_ends_the_connection_and_the_server_keeps_serving(
        srv: Running) -> None:
    client = await connect(srv.port, "/raise")
    with contextlib.suppress(asyncio.IncompleteReadError):  # a 1011 close frame, or none
        await client.expect_close(1011)
    await client.expect_eof()
    await assert_still_serving(srv.port)


# --- 13. shutdown ---------------------------------------------------------------------------------

async def test_shutdown_closes_open_connections_with_1012() -> None:
    app = EchoApp()
    async with running(app) as served:
        client = await connect(served.port)
        await client.echo(TEXT, b"up")
        served.server.should_exit = True
        await client.expect_close(1012, timeout=2)
        await client.expect_eof()
    assert app.disconnects and app.disconnects[0][0] == 1012


# --- 14. keepalive --------------------------------------------------------------------------------

def keepalive_config(app: EchoApp) -> uvicorn.Config:
    base = project_config(app)
    return uvicorn.Config(app, ws=base.ws, ws_max_size=base.ws_max_size,
                          ws_per_message_deflate=base.ws_per_message_deflate, log_config=None,
                          access_log=False, lifespan="on", ws_ping_interval=0.2, ws_ping_timeout=0.3)


async def test_keepalive_client_answering_pings_stays_open() -> None:
    app = EchoApp()
    async with running(app, keepalive_config(app)) as served:
        client = await connect(served.port)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.5
        pings = 0
        while (left := deadline - loop.time()) > 0:
            try:
                frame = await client.read_frame(timeout=left)
            except TimeoutError:
                break
            assert frame.opcode == PING, f"expected only pings, got {frame}"
            pings += 1
            await client.send_frame(PONG, frame.payload)
        assert pings >= 4  # one every 0.2 s (less the round trip)
        await client.echo(TEXT, b"still open")
        assert app.disconnects == []
        await client.aclose()


async def test_keepalive_client_not_answering_is_closed() -> None:
    app = EchoApp()
    async with running(app, keepalive_config(app)) as served:
        client = await connect(served.port)
        frame = await client.read_frame()
        assert frame.opcode == PING and len(frame.payload) > 0
        await client.expect_close(1011)  # 0.3 s after the unanswered ping
        await client.expect_eof()
        await wait_for(lambda: bool(app.disconnects), 2)  # the app hears of it


# --- through the real runner app: a protocol error ends only its own session --------------------

RATE = 16000
FRAME = 640  # 20 ms of PCM16 mono at 16 kHz
PCM = tone(440, 0.2, RATE).pcm
PATH = f"/ws-client?sample_rate={RATE}"


async def echo_bot(transport: Any) -> None:
    async for audio in transport.audio(sample_rate=RATE):
        await transport.send_audio(audio)


async def audio_round_trip(client: Client, pcm: bytes = PCM) -> None:
    """Send `pcm` in 20 ms binary frames; at least half of it comes back as binary frames."""
    for offset in range(0, len(pcm), FRAME):
        await client.send_frame(BINARY, pcm[offset:offset + FRAME])
    received = 0
    while received < len(pcm) // 2:
        frame = await client.read_frame(timeout=2)
        if frame.opcode == BINARY:
            received += len(frame.payload)


async def two_sessions(served: Any) -> tuple[Client, Client]:
    a = await connect(served.port, PATH)
    b = await connect(served.port, PATH)
    await wait_for(lambda: len(served.sessions.active) == 2)
    await audio_round_trip(a)
    await audio_round_trip(b)
    return a, b


async def finish(served: Any, survivor: Client) -> None:
    await audio_round_trip(survivor)  # the other session is untouched
    await survivor.send_frame(CLOSE, close_payload(1000))
    while (await survivor.read_frame(timeout=2)).opcode != CLOSE:
        pass
    await survivor.aclose()
    await wait_for(lambda: not served.sessions.active)


FAULTS = {
    "unmasked frame": (encode_frame(BINARY, PCM[:FRAME], mask=False), 1002),
    "oversized message": (encode_frame(BINARY, b"\0" * 1024, length=WEBSOCKET_MAX_MESSAGE + 2)[:14 + 1024],
                          1009),
    "vanished mid-frame": (encode_frame(BINARY, PCM[:FRAME])[:100], None),
}


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_fault_on_one_runner_session_ends_only_that_session(fault: str) -> None:
    wire, code = FAULTS[fault]
    async with serve(make_config(transport="websocket"), as_bot(echo_bot)) as served:
        a, b = await two_sessions(served)
        await a.send_raw(wire)
        if code is None:
            a.abort()
        else:
            while (frame := await a.read_frame(timeout=2)).opcode != CLOSE:
                pass
            assert struct.unpack("!H", frame.payload[:2])[0] == code
            await a.expect_eof()
        await wait_for(lambda: len(served.sessions.active) == 1)
        await finish(served, b)
        assert dict(served.sessions.outcomes) == {"websocket:client_left": 2}
